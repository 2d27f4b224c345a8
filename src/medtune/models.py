"""Config → library objects: quantization, adapters, and the one loading path for every base model.

Hub ids, local checkpoints (e.g. a MedCALM made by stage=pretrain) and the offline tiny models all go
through `AutoModelForCausalLM.from_pretrained`; only the tiny ones are built first if missing.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from medtune.adapters import build_peft_config, initialise_loftq
from medtune.chat import require_chat_template
from medtune.config import (
    LORA_METHODS,
    AdapterConfig,
    AdapterMethod,
    BaseModelConfig,
    BitsAndBytesQuantConfig,
    QuantizationConfig,
    QuantMode,
    TrainConfig,
    load_run_config,
)
from medtune.console import quiet_loading_bars
from medtune.errors import ConfigError
from medtune.prompts import CHAT_TEMPLATE
from medtune.run_dir import MODEL_SUBDIR, RESOLVED_CONFIG


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build_quantization_config(quant: QuantizationConfig) -> BitsAndBytesConfig | None:
    if quant.mode == QuantMode.none:
        return None
    assert isinstance(quant, BitsAndBytesQuantConfig)  # every quantized mode composes as one (config.applicable)
    if quant.mode == QuantMode.nf4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=quant.double_quant,
            bnb_4bit_compute_dtype=torch_dtype(quant.compute_dtype),
        )
    if quant.mode == QuantMode.int8:
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"no bitsandbytes settings for quantization.mode={quant.mode}")


def load_base_model(
    base: BaseModelConfig,
    quant: QuantizationConfig,
    device_map: str | dict | None = None,
    chat_key: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the base model and its tokenizer, quantized as configured (a tiny one must be built first:
    medtune.tiny_paths.ensure_tiny_model, which the entry scripts call). `chat_key`: the setting that needs the
    tokenizer's chat template (e.g. dataset.prompt_template=chat); a tokenizer without one stops before the weights
    load."""
    quiet_loading_bars()
    source = str(Path(base.path).expanduser()) if base.tiny else base.path
    common = {"revision": base.revision, "trust_remote_code": base.trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        if chat_key:
            require_chat_template(tokenizer, chat_key)
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=torch_dtype(base.dtype),
            quantization_config=build_quantization_config(quant),
            device_map=device_map,
            attn_implementation=base.attn_implementation,
            **common,
        )
    except ConfigError:
        raise  # a ValueError too, but already the one clear line
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"base_model.path={base.path!r} cannot be loaded ({type(err).__name__}: {_first_line(err)}). "
            "Hub ids need network access and HF_HUB_OFFLINE unset (or a copy in the HF cache); "
            "local paths must hold a saved model."
        ) from err
    if tokenizer.pad_token is None:  # Llama 2 ships without one; padding positions are masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    if quant.mode == QuantMode.nf4:
        keep_4bit_layers_trainable(model)
    return model, tokenizer


def keep_4bit_layers_trainable(model: torch.nn.Module) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit layer's weights for inference at its first eval-mode
    forward, for good, and the repacked path cannot train (an in-place bias add on an autograd output). train.py
    scores the base and then trains the same model, so that repacking is switched off."""
    from bitsandbytes.nn import Linear4bit

    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else ""


def attach_adapter(model: PreTrainedModel, adapter: AdapterConfig, quantized: bool):
    """Wrap the model for training: a peft adapter for the LoRA methods and VeRA (LoftQ initialised on the 4-bit
    weights here; EVA from the data later, medtune.adapters.prepare_adapter), the model itself for full fine-tuning.

    Gradient checkpointing is the Trainer's job (non-reentrant, see arguments.checkpointing_args): non-reentrant
    checkpoints need no grad-requiring input, so the frozen base needs no `enable_input_require_grads` hook.
    """
    peft_config = build_peft_config(adapter)
    if peft_config is None:
        return model
    if quantized:  # norms to float32 for stable 4-bit training; checkpointing is left to the Trainer
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    with warnings.catch_warnings():  # EVA: peft suggests meta-device adapter weights, which the Trainer cannot move
        warnings.filterwarnings("ignore", message=".*eva initialization used with low_cpu_mem_usage=False")
        peft_model = get_peft_model(model, peft_config)
    if adapter.method == AdapterMethod.loftq:
        initialise_loftq(peft_model)
    return peft_model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count by their logical size."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel() * 2 if param.__class__.__name__ == "Params4bit" else param.numel()
        total += n
        trainable += n if param.requires_grad else 0
    return trainable, total


def chat_key(cfg: TrainConfig) -> str | None:
    """The setting of a train.py config that needs the tokenizer's chat template, if any."""
    if cfg.dataset.prompt_template == CHAT_TEMPLATE:
        return f"dataset.prompt_template={CHAT_TEMPLATE}"
    return "eval.chat_template=true" if cfg.eval.chat_template else None


def load_trained(run_dir: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, TrainConfig]:
    """Base + trained adapter (or the fully fine-tuned weights) of a finished train.py run."""
    run_dir = Path(run_dir)
    config_path, model_dir = run_dir / RESOLVED_CONFIG, run_dir / MODEL_SUBDIR
    if not config_path.exists() or not model_dir.exists():
        raise ConfigError(f"{run_dir} is not a finished train.py run (needs {RESOLVED_CONFIG} and {MODEL_SUBDIR}/).")
    cfg = load_run_config(run_dir)
    if cfg.adapter.method == AdapterMethod.full:
        full = BaseModelConfig(**{**vars(cfg.base_model), "path": str(model_dir), "tiny": False})
        model, tokenizer = load_base_model(full, cfg.quantization, chat_key=chat_key(cfg))
        return model, tokenizer, cfg
    model, tokenizer = load_base_model(cfg.base_model, cfg.quantization, chat_key=chat_key(cfg))
    if cfg.adapter.method in LORA_METHODS:
        model = PeftModel.from_pretrained(model, str(model_dir))
    return model, tokenizer, cfg
