"""Config → peft adapters, one method each (README "Tuning methods"): the peft config, the initialisations that need
more than `get_peft_model` (LoftQ on the 4-bit base, EVA's pass over the training data), LoRA+'s optimizer, and a
save that applies to the unchanged base model and names the method."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from unittest import mock

import torch
from peft import EvaConfig, LoraConfig, PeftModel, VeraConfig
from transformers import Trainer, TrainingArguments

from medtune.config import ALL_LINEAR, LORA_METHODS, AdapterConfig, LoraAdapterConfig
from medtune.enums import AdapterMethod
from medtune.errors import ConfigError
from medtune.run_dir import ADAPTER_INIT_SUBDIR, ADAPTER_METHOD_FILE, EVA_STATE_FILE, write_json
from medtune.tuning import tuning_method

# peft's init_lora_weights for the methods get_peft_model initialises itself (True: peft's default LoRA init).
INIT_LORA_WEIGHTS: dict[AdapterMethod, Literal["pissa", "olora", "eva"]] = {
    AdapterMethod.pissa: "pissa",
    AdapterMethod.olora: "olora",
    AdapterMethod.eva: "eva",
}
# The base keeps the residual W - B·A: the adapter is saved converted to a plain LoRA for the unchanged base.
MUTATES_BASE = (AdapterMethod.pissa, AdapterMethod.olora)


def build_peft_config(adapter: AdapterConfig) -> LoraConfig | VeraConfig | None:
    if adapter.method not in LORA_METHODS:
        return None
    assert isinstance(adapter, LoraAdapterConfig)  # every peft method composes as one (config.applicable)
    targets = peft_targets(adapter.target_modules)
    if adapter.method == AdapterMethod.vera:  # save_projection (peft's default): the shared projections are saved
        return VeraConfig(
            r=adapter.r, target_modules=targets, vera_dropout=adapter.dropout, bias="none", task_type="CAUSAL_LM"
        )
    return LoraConfig(
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=targets,
        use_dora=adapter.method == AdapterMethod.dora,
        use_rslora=adapter.method == AdapterMethod.rslora,
        init_lora_weights=INIT_LORA_WEIGHTS.get(adapter.method, True),
        eva_config=EvaConfig() if adapter.method == AdapterMethod.eva else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def peft_targets(target_modules: list[str]) -> str | list[str]:
    """peft reads the shorthand only as a plain string; names go as a plain list (not a ListConfig)."""
    return ALL_LINEAR if list(target_modules) == [ALL_LINEAR] else list(target_modules)


def initialise_loftq(model: PeftModel) -> None:
    """LoftQ the way peft documents it for a bitsandbytes 4-bit base: `replace_lora_weights_loftq` reads each target
    layer's unquantized weights from the base's safetensors files and sets B·A to the best rank-r approximation of
    the quantization error. peft sets B·A to the error itself, right only at a LoRA scaling (alpha/r) of 1, so each
    layer's B is then divided by its scaling: scaling·B·A is the error at any alpha."""
    from peft import replace_lora_weights_loftq

    source = str(model.get_base_model().name_or_path)
    local = Path(source).expanduser()

    def undo_scaling(peft_model: torch.nn.Module, name: str) -> bool:  # peft's callback after each layer: keep it
        layer: Any = model.get_base_model().get_submodule(name)
        layer.lora_B["default"].weight.data /= layer.scaling["default"]
        return True

    try:
        with _loftq_on_the_weights_device():
            replace_lora_weights_loftq(model, model_path=str(local) if local.is_dir() else None, callback=undo_scaling)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(
            f"adapter=loftq reads the unquantized weights of base_model.path={source} from its safetensors files, "
            f"and found none ({str(err).splitlines()[0]}); download the model (or save it with safetensors) first."
        ) from err


@contextmanager
def _loftq_on_the_weights_device() -> Iterator[None]:
    """peft 0.21's per-layer LoftQ step moves the weights to "cuda" (or "xpu") unconditionally; on a machine with
    neither, the same step (`_loftq_layer_init`) runs where the 4-bit weights are, and peft's loop does the rest."""
    from peft.utils import loftq_utils

    if torch.cuda.is_available() or loftq_utils.is_xpu_available():
        yield
        return
    with mock.patch.object(loftq_utils, "_loftq_init_new", _loftq_layer_init):
        yield


@torch.no_grad()
def _loftq_layer_init(qweight: Any, weight: torch.Tensor, num_bits: int, reduced_rank: int):
    """peft's `_loftq_init_new` on the 4-bit weights' own device: (A, B) with B·A ≈ W - dequantize(Q)."""
    import bitsandbytes as bnb
    from peft.utils.loftq_utils import _low_rank_decomposition

    dequantized = bnb.functional.dequantize_4bit(qweight.data, qweight.quant_state)
    residual = weight.to(dequantized.device, torch.float32) - dequantized.float()
    parts = _low_rank_decomposition(residual, reduced_rank=reduced_rank)
    return parts["R"], parts["L"]


def prepare_adapter(
    model: Any, adapter: AdapterConfig, train_batches: Callable[[], Iterable], run_dir: Path, main: bool
) -> None:
    """Before step 1: EVA's initialisation, and PiSSA/OLoRA's initial adapter, from which their saved adapter becomes
    a plain LoRA."""
    if adapter.method == AdapterMethod.eva:
        _initialise_eva(model, train_batches, run_dir / EVA_STATE_FILE, main)
    if adapter.method in MUTATES_BASE and main:
        model.save_pretrained(str(run_dir / ADAPTER_INIT_SUBDIR))


def _initialise_eva(model: Any, train_batches: Callable[[], Iterable], state_file: Path, main: bool) -> None:
    """EVA's pass over the training batches (peft cycles them until every layer's components converge;
    `train_batches` makes the Trainer's dataloader) runs once per run: its result is kept in the run dir, so a
    resumed run rebuilds the same ranks from it, without paying for the pass again, and loads its checkpoint."""
    from peft import get_eva_state_dict, initialize_lora_eva_weights

    if state_file.is_file():
        state = torch.load(state_file)
    else:
        state = get_eva_state_dict(model, train_batches(), prepare_model_inputs_fn=_eva_token_positions)
        if main:
            torch.save(state, state_file)
    initialize_lora_eva_weights(model, eva_state_dict=state)


def _eva_token_positions(batch: Any, peft_config: LoraConfig) -> torch.Tensor:
    """peft's positions for EVA's SVD (attended tokens with a label), from the collator's BatchEncoding (a mapping
    that peft's default, wanting a plain dict, refuses)."""
    from peft.tuners.lora.eva import prepare_model_inputs_fn_language_modeling

    return prepare_model_inputs_fn_language_modeling(dict(batch), peft_config)


class AdapterTrainer(Trainer):
    """The Trainer, with LoRA+'s optimizer for adapter=loraplus, built where the Trainer builds its own (so FSDP,
    which refuses a ready-made `optimizers=`, and checkpoint resumption treat it like any optimizer)."""

    def __init__(self, *args: Any, adapter: AdapterConfig, **kwargs: Any) -> None:
        self.adapter = adapter
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = loraplus_optimizer(self.model if model is None else model, self.adapter, self.args)
        return super().create_optimizer(model)  # the Trainer's own when that was None


def loraplus_optimizer(model: Any, adapter: AdapterConfig, args: TrainingArguments) -> torch.optim.Optimizer | None:
    """LoRA+: trainer.optim's optimizer (class and settings as the Trainer would build it) with B's learning rate
    `adapter.loraplus_lr_ratio` times A's; None for every other method (the Trainer builds its own)."""
    if adapter.method != AdapterMethod.loraplus:
        return None
    assert isinstance(adapter, LoraAdapterConfig) and adapter.loraplus_lr_ratio is not None  # tuning.py checked it
    from peft.optimizers import create_loraplus_optimizer

    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return create_loraplus_optimizer(
        model,
        optimizer_cls,
        loraplus_lr_ratio=adapter.loraplus_lr_ratio,
        loraplus_weight_decay=args.weight_decay,
        **kwargs,
    )


def save_trained(trainer: Trainer, adapter: AdapterConfig, quantization: str, model_dir: Path, run_dir: Path) -> None:
    """The trained adapter (or full weights) in model_dir; PiSSA/OLoRA converted by peft to a rank-2r LoRA on the
    unchanged base, so evaluate.py and an export load base + adapter as for any LoRA. An adapter's folder also
    names its method (ADAPTER_METHOD_FILE): peft's adapter_config.json says rsLoRA, PiSSA, OLoRA, EVA and VeRA
    before conversion, but not LoftQ or LoRA+, nor PiSSA/OLoRA once converted."""
    if adapter.method not in MUTATES_BASE:
        trainer.save_model(str(model_dir))
    elif trainer.args.should_save:
        with warnings.catch_warnings():  # peft's advice to convert, raised while it loads the initial adapter to do so
            warnings.filterwarnings("ignore", message=".*changes the base weights of the model", category=UserWarning)
            trained: Any = trainer.model
            trained.save_pretrained(
                str(model_dir), path_initial_model_for_weight_conversion=str(run_dir / ADAPTER_INIT_SUBDIR)
            )
    if adapter.method in LORA_METHODS and trainer.args.should_save:
        marker = {"method": str(adapter.method), "tuning": tuning_method(adapter.method, quantization)}
        if adapter.method in MUTATES_BASE:
            marker["saved_as"] = "lora (rank 2r, for the unchanged base: peft path_initial_model_for_weight_conversion)"
        write_json(model_dir / ADAPTER_METHOD_FILE, marker)
