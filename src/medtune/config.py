"""Typed schema of every medtune config, registered in Hydra's ConfigStore.

Hydra validates each composed YAML against these dataclasses (a typo or a wrong type fails at
composition), and `validate()` checks the rules that cross config groups before any weights load.
Code below the entry scripts receives these dataclasses via `to_train_config`, never raw DictConfigs. The enumerated
settings live in medtune.enums, the numeric ranges in medtune.ranges.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

from medtune.enums import (
    LORA_METHODS,
    AdapterMethod,
    AnswerFormat,
    Arch,
    DatasetSource,
    Dtype,
    EvalMode,
    EvalPrompt,
    EvalSource,
    LoglikConvention,
    MixedPrecision,
    ModelArtifact,
    QuantMode,
    Stage,
    TinyChatFormat,
    WandbMode,
)
from medtune.errors import ConfigError
from medtune.packing import VARLEN_ATTENTION, check_packing_setting
from medtune.prompts import check_chat_settings, check_template_name, follow_training_format
from medtune.ranges import AT_LEAST_1, FRACTION, NON_NEGATIVE, POSITIVE, UNIT, check_ranges, ranged
from medtune.run_dir import RESOLVED_CONFIG
from medtune.tiny_paths import check_tiny_model_path
from medtune.tuning import TUNING_METHODS, check_adapter_method, tuning_method  # noqa: F401 (tuning_method: re-exported)

ALL_LINEAR = "all-linear"  # peft's shorthand for every linear layer but the output layer
# Attention kernels transformers dispatches to; a kernels-hub repo id ("kernels-community/...") is also accepted.
# The flash ones read packed position ids as variable-length sequences (no padding, no mask).
ATTENTION_PACKAGES = {
    "eager": None,
    "sdpa": None,
    "flex_attention": None,  # built into torch; packed rows become a block-sparse mask that skips other examples
    "flash_attention_2": "flash-attn",
    "flash_attention_3": "flash-attn-3 (flash_attn_interface, built from flash-attention's hopper/ directory)",
}
# ... and the transformers check (transformers.utils.import_utils) that says whether that package is installed.
FLASH_ATTENTION = {"flash_attention_2": "is_flash_attn_2_available", "flash_attention_3": "is_flash_attn_3_available"}
# Model types the Trainer's use_liger_kernel can patch (liger_kernel.transformers.MODEL_TYPE_TO_APPLY_LIGER_FN).
LIGER_ARCHITECTURES = ("llama",)
T = TypeVar("T")


@dataclass
class BaseModelConfig:
    name: str = MISSING  # short label used in W&B tags and the report
    path: str = MISSING  # hub id or local directory, always loaded with from_pretrained
    arch: Arch = MISSING
    tiny: bool = False  # an offline model medtune builds at `path` on first use
    # tiny only: built by experiment=demo_pretrain on this base_model group (e.g. tiny_gptneox)
    continual_pretraining_of: str | None = None
    tiny_chat_format: TinyChatFormat | None = None  # tiny only: the chat format written into its tokenizer
    # variables for the tokenizer's chat template (e.g. Qwen3's {enable_thinking: false}), in training and scoring
    chat_template_kwargs: dict[str, Any] | None = None
    lora_targets: list[str] = MISSING  # attention projections (the paper's LoRA targets)
    dtype: Dtype = Dtype.float32  # weights dtype for unquantized layers
    attn_implementation: str = (
        "sdpa"  # eager | sdpa | flex_attention | flash_attention_2 | flash_attention_3 | hub repo
    )
    revision: str | None = None
    trust_remote_code: bool = False
    license: str | None = None  # the weights' licence (a hub licence id), for the model card of an export


@dataclass
class AdapterConfig:
    """A run's adapter as it applies: `full` and `none` (the untuned base) have nothing beyond the method."""

    method: AdapterMethod = AdapterMethod.none


@dataclass
class LoraAdapterConfig(AdapterConfig):
    """lora | dora | rslora | pissa | olora | loftq | loraplus | vera | eva (enums.LORA_METHODS). Also the composition
    schema of every adapter group, so a value set for LoRA in an experiment composes with adapter=full;
    `to_train_config` then keeps only what the method uses."""

    method: AdapterMethod = AdapterMethod.lora
    r: int = ranged(8, AT_LEAST_1)
    alpha: int = ranged(32, AT_LEAST_1)
    dropout: float = ranged(0.05, FRACTION)
    # module names, or [all-linear] (peft's shorthand: every linear layer but the output layer)
    target_modules: list[str] = field(default_factory=list)
    loraplus_lr_ratio: float | None = ranged(None, POSITIVE)  # adapter=loraplus only: B's learning rate over A's


@dataclass
class QuantizationConfig:
    """`none`: full-precision weights, nothing else applies."""

    mode: QuantMode = QuantMode.none


@dataclass
class BitsAndBytesQuantConfig(QuantizationConfig):
    """nf4 | int8 (bitsandbytes); also the composition schema of every quantization group."""

    double_quant: bool = True  # nf4 only: quantize the quantization constants too
    compute_dtype: Dtype = Dtype.float32  # dtype of the de-quantized matmuls


@dataclass
class DatasetConfig:
    source: DatasetSource = DatasetSource.demo
    path: str | None = None  # jsonl/text file, or hf dataset name
    name: str | None = None  # hf config name
    split: str = "train"
    eval_path: str | None = None  # held-out jsonl file (jsonl) or split name (hf)
    eval_fraction: float = ranged(0.05, FRACTION)  # held out from the training records when no eval_path is given
    prompt_template: str = "alpaca_ja"  # a name from medtune.prompts.PROMPT_TEMPLATES, or chat (medtune.chat)
    system_prompt: str | None = None  # prompt_template=chat: the system turn of every conversation (null: none)
    train_on_inputs: bool = False  # False: prompt tokens are masked out of the loss
    max_input_tokens: int = ranged(512, AT_LEAST_1)  # prompt truncation (the paper: 512)
    max_target_tokens: int = ranged(512, AT_LEAST_1)  # response truncation (the paper: 512)
    block_size: int = ranged(768, AT_LEAST_1)  # stage=pretrain: tokens per packed block (the paper: 768)
    # auto | true | false: lay a batch's examples out in as few rows as fit, attention never crossing examples;
    # auto packs where the attention kernel gains from it (the rule: medtune.packing.choose_packing)
    packing: bool | str = "auto"
    limit: int | None = ranged(None, AT_LEAST_1)  # use only the first N records (smoke runs)


@dataclass
class TrainerConfig:
    max_steps: int = 200
    learning_rate: float = ranged(5e-5, POSITIVE)
    batch_size: int = ranged(8, AT_LEAST_1)  # examples per optimizer step = batch_size × grad_accum × processes
    grad_accum: int = ranged(1, AT_LEAST_1)
    warmup_ratio: float = ranged(0.0, UNIT)
    weight_decay: float = ranged(0.0, NON_NEGATIVE)
    lr_scheduler: str = "linear"
    optim: str = "adamw_torch"
    mixed_precision: MixedPrecision = MixedPrecision.no
    max_grad_norm: float = ranged(1.0, NON_NEGATIVE)  # gradient-norm clipping; 0 disables it
    gradient_checkpointing: bool = False  # non-reentrant (use_reentrant=False): recompute activations in backward
    group_by_length: bool = False  # batches of similar lengths: less padding, less randomness
    use_liger_kernel: bool = False  # the Trainer's Liger kernels (fused RMSNorm/SwiGLU/cross-entropy; pip liger-kernel)
    torch_compile: bool = False  # the Trainer compiles the model with torch.compile
    logging_steps: int = ranged(10, AT_LEAST_1)
    eval_steps: int = ranged(0, NON_NEGATIVE)  # held-out loss every N steps; 0 = only at the end
    save_steps: int = ranged(50, AT_LEAST_1)  # checkpoint cadence; a killed run resumes from the last one
    save_total_limit: int = 2
    seed: int = 42  # adapter init, dropout, data order and the held-out split; sweep it like any key
    # The libraries' deterministic algorithms (torch.use_deterministic_algorithms, cuDNN/cuBLAS settings): identical
    # runs also on GPUs, at some speed; on CPUs runs are reproducible from the seed alone.
    deterministic: bool = False
    dataloader_workers: int = ranged(0, NON_NEGATIVE)


@dataclass
class HubFieldsConfig:
    """How a `datasets` table maps onto a question (eval.source=hf): a new benchmark is a YAML file."""

    name: str | None = None  # the dataset's config name (load_dataset's second argument)
    split: str = "test"
    data_files: str | None = None  # with eval.path=json (or csv, parquet): the local file(s) to read
    id: str | None = None  # the question id column (None: the row number)
    question: str = "question"
    choices: list[str] = field(default_factory=lambda: ["choices"])  # one list column, or one column per choice
    answer: str = "answer"
    answer_format: AnswerFormat = AnswerFormat.letter
    text_only: str | None = None  # a boolean column; None: every question is text-only


@dataclass
class EvalConfig:
    suite: str = "demo"  # name used in metric keys: eval/<suite>/<metric>
    source: EvalSource = EvalSource.demo
    path: str | None = None  # IgakuQA clone, data/ dir or single file; JSONL / JSON file; hub dataset or saved dir
    hub: HubFieldsConfig = field(default_factory=HubFieldsConfig)  # eval.source=hf only
    years: list[int] = field(default_factory=list)  # IgakuQA: keep these exam years (empty: all)
    text_only: bool = True  # skip questions that need an image
    prompt: EvalPrompt = EvalPrompt.jmedlora
    shots: int = ranged(1, NON_NEGATIVE)
    mode: EvalMode = EvalMode.loglik
    loglik_convention: LoglikConvention = LoglikConvention.medtune
    batch_size: int = ranged(8, AT_LEAST_1)
    max_new_tokens: int = ranged(48, AT_LEAST_1)
    limit: int | None = ranged(None, AT_LEAST_1)  # first N questions (smoke runs)
    at_end: bool = True  # train.py: score base and tuned model on this suite
    every_steps: int = ranged(0, NON_NEGATIVE)  # train.py: loglik accuracy every N steps (0: off)
    # >1: ask every question again with its choices rotated 1..k-1 places (position bias)
    permutations: int = ranged(1, AT_LEAST_1)
    # local models: prompts rendered by the tokenizer's chat template, generation prompt added. null: as the model
    # was trained (train.py: dataset.prompt_template=chat; evaluate.py run_dir=: that run's); an untuned base: false
    chat_template: bool | None = None
    system_prompt: str | None = None  # chat_template, jmedlora prompts: the system turn (null: dataset.system_prompt)


@dataclass
class WandbConfig:
    """Every field left null (the default) is taken from its W&B environment variable, else a built-in default:
    resolved in one place, medtune.tracking.resolve_wandb (README "Weights & Biases: where settings come from")."""

    mode: WandbMode | None = None  # null: $WANDB_MODE, else offline
    project: str | None = None  # null: $WANDB_PROJECT, else medtune
    entity: str | None = None  # null: $WANDB_ENTITY, else your W&B default entity
    dir: str | None = None  # null: $WANDB_DIR, else the run dir (run files under <dir>/wandb/)
    group: str | None = None  # null: $WANDB_RUN_GROUP, else the experiment name
    name: str | None = None  # null: $WANDB_NAME, else <base>-<tuning>-<steps>
    tags: list[str] | None = None  # null: $WANDB_TAGS (comma-separated); added to medtune's own tags
    # train.py's `model` artifact: copy (files go into W&B), reference (file:// + digests, nothing copied),
    # auto (copy up to MODEL_COPY_LIMIT_MB, e.g. an adapter; reference above, e.g. 70B full weights), off
    model_artifact: ModelArtifact = ModelArtifact.auto


@dataclass
class GpuMemoryConfig:
    """GPU memory a preset needs (README "Memory per cell"): `floor_gb` computed from the shapes (weights as loaded
    + trainable parameters, gradients, AdamW moments), `activations_gb` measured by bench/bench_shapes.py at
    `at_batch` examples per device batch (they scale with the batch). 0: not stated, nothing is checked."""

    floor_gb: float = 0.0
    activations_gb: float = 0.0
    at_batch: int = 8

    def needed_gb(self, batch_size: int) -> float:
        return self.floor_gb + self.activations_gb * batch_size / self.at_batch


@dataclass
class SearchTrialConfig:
    """Set by the medtune_optuna sweeper on each trial it launches (README "Hyper-parameter search"): which study
    and trial this run is, so the trial's own process reports to the study storage (works on SLURM nodes too)."""

    storage: str | None = (
        None  # the study's storage (sqlite:///<sweep dir>/optuna.db or a journal file); null: no search
    )
    study: str | None = None
    trial: int | None = None  # the trial number in the study
    report: str | None = None  # the figure reported for pruning (eval/<suite>/accuracy or eval/loss); null: none


@dataclass
class TrainConfig:
    base_model: BaseModelConfig = field(default_factory=BaseModelConfig)
    adapter: AdapterConfig = field(default_factory=LoraAdapterConfig)
    quantization: QuantizationConfig = field(default_factory=BitsAndBytesQuantConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    experiment_name: str = "demo"
    stage: Stage = Stage.sft  # sft: instruction-tuning; pretrain: continual pretraining on raw text
    cache_dir: str = MISSING  # where offline tiny models are built (not an output)
    resume: str | None = None  # a previous run dir: continue it (same dir, checkpoint, W&B run)
    gpu_memory: GpuMemoryConfig = field(default_factory=GpuMemoryConfig)  # checked against a CUDA device at start-up
    search: SearchTrialConfig = field(default_factory=SearchTrialConfig)


def check_eval(eval_cfg: EvalConfig) -> None:
    """The evaluation set's config-only checks (every script runs them before loading weights or data)."""
    if eval_cfg.source != EvalSource.demo and not eval_cfg.path:
        kind = {"igakuqa": "directory or file", "hf": "hub dataset or saved dataset dir"}.get(eval_cfg.source, "file")
        raise ConfigError(f"eval={eval_cfg.source} needs eval.path=<{kind}>.")


def validate(cfg: TrainConfig) -> None:
    """Reject combinations that cannot work, before any weights load (enumerated values were checked by OmegaConf
    at composition)."""
    check_tiny_model_path(cfg.base_model, cfg.cache_dir)
    if cfg.stage == Stage.sft and (cfg.eval.at_end or cfg.eval.every_steps):  # the QA set is scored
        check_eval(cfg.eval)
    method, quant = cfg.adapter.method, cfg.quantization.mode
    if method == AdapterMethod.full and quant != QuantMode.none:
        raise ConfigError(
            f"adapter=full cannot train quantization={quant}: quantized weights are frozen, so only an "
            "adapter (lora/dora) can be trained on top of them; use adapter=lora for QLoRA."
        )
    if isinstance(cfg.adapter, LoraAdapterConfig):
        _check_targets(cfg.adapter)
        check_adapter_method(cfg.adapter, quant)
    check_template_name(cfg.dataset.prompt_template)  # an unknown name fails here, not after the model loaded
    check_chat_settings(cfg)
    check_packing_setting(cfg.dataset.packing)
    if cfg.stage == Stage.pretrain and method != AdapterMethod.full:
        raise ConfigError(
            "stage=pretrain writes a full checkpoint for base_model.path, so it needs adapter=full "
            f"(got adapter={method})."
        )
    if cfg.stage == Stage.pretrain and cfg.dataset.source == DatasetSource.jsonl:
        raise ConfigError(
            "stage=pretrain trains on raw text: use dataset=medical_text (or demo/hf), not jsonl records."
        )
    if cfg.stage == Stage.sft and cfg.dataset.source == DatasetSource.text:
        raise ConfigError("dataset.source=text is raw text for stage=pretrain; instruction-tuning needs records.")
    if cfg.dataset.source in ("jsonl", "text") and not cfg.dataset.path:
        raise ConfigError(f"dataset={cfg.dataset.source} needs dataset.path=<file>.")
    if cfg.trainer.max_steps <= 0 and method != AdapterMethod.none:
        raise ConfigError(f"trainer.max_steps must be positive (got {cfg.trainer.max_steps}).")
    _validate_attention(cfg)
    _validate_trainer_knobs(cfg)


def _check_targets(adapter: LoraAdapterConfig) -> None:
    if not adapter.target_modules:
        raise ConfigError(
            f"adapter={adapter.method} needs adapter.target_modules: module names or [{ALL_LINEAR}] (none were given)."
        )
    if ALL_LINEAR in adapter.target_modules and len(adapter.target_modules) > 1:
        raise ConfigError(f"adapter.target_modules=[{ALL_LINEAR}] already names every linear layer: list it alone.")


def _validate_attention(cfg: TrainConfig) -> None:
    """The attention kernel must be installed and get the half-precision weights it runs in (transformers is imported
    only for a kernel that needs a package, so a re-run sweep that skips its finished cells never loads it)."""
    attn = cfg.base_model.attn_implementation
    is_hub_kernel = "/" in attn
    if not is_hub_kernel and attn not in ATTENTION_PACKAGES:
        raise ConfigError(
            f"base_model.attn_implementation={attn!r} is not one of {', '.join(ATTENTION_PACKAGES)} "
            "or a kernels-hub repo id."
        )
    if attn in FLASH_ATTENTION and not _package_available(FLASH_ATTENTION[attn]):
        raise ConfigError(
            f"base_model.attn_implementation={attn} needs the {ATTENTION_PACKAGES[attn]} package and a CUDA GPU; "
            "install it or use sdpa (the default) or flex_attention."
        )
    if is_hub_kernel and not _package_available("is_kernels_available"):
        raise ConfigError(f"base_model.attn_implementation={attn} is a kernels-hub kernel: pip install kernels.")
    quant = cfg.quantization
    weights_dtype = quant.compute_dtype if isinstance(quant, BitsAndBytesQuantConfig) else cfg.base_model.dtype
    if attn in VARLEN_ATTENTION and weights_dtype == "float32":
        raise ConfigError(
            f"base_model.attn_implementation={attn} runs in bfloat16/float16 only: set base_model.dtype=bfloat16."
        )


def _package_available(check: str) -> bool:
    """transformers' own check `import_utils.is_<package>_available`, imported only when a setting needs it."""
    from transformers.utils import import_utils

    return bool(getattr(import_utils, check)())


def _validate_trainer_knobs(cfg: TrainConfig) -> None:
    """Trainer switches: each needs its package and a partner it works with."""
    t = cfg.trainer
    if t.use_liger_kernel and not _package_available("is_liger_kernel_available"):
        raise ConfigError("trainer.use_liger_kernel=true needs the liger-kernel package: pip install liger-kernel.")
    if t.use_liger_kernel and cfg.base_model.arch not in LIGER_ARCHITECTURES:
        raise ConfigError(
            f"trainer.use_liger_kernel=true has no kernels for base_model.arch={cfg.base_model.arch} "
            f"(Liger patches {', '.join(LIGER_ARCHITECTURES)}); set it to false."
        )
    needs_bnb = t.optim.startswith("paged_") or "8bit" in t.optim
    if needs_bnb and not _package_available("is_bitsandbytes_available"):
        raise ConfigError(f"trainer.optim={t.optim} is a bitsandbytes optimizer: pip install bitsandbytes.")
    if t.gradient_checkpointing and os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() == "true":
        raise ConfigError(
            "the accelerate config already checkpoints activations (fsdp_activation_checkpointing: true); "
            "set trainer.gradient_checkpointing=false."
        )


def to_typed(cfg: DictConfig | Any, schema: type[T], check: Callable[[T], None]) -> T:
    """Resolve a composed DictConfig into its schema's dataclasses, keep what applies to the run's method
    (`applicable`), and run the schema's cross-group checks."""
    if isinstance(cfg, DictConfig):
        _reject_unknown_keys(cfg, schema)
    typed = cfg if isinstance(cfg, schema) else OmegaConf.to_object(cfg)
    if not isinstance(typed, schema):
        raise ConfigError(f"expected a {schema.__name__} config, got {type(typed).__name__}")
    check_ranges(typed)
    check(applicable(typed))
    return typed


def _reject_unknown_keys(cfg: DictConfig, schema: type) -> None:
    """A key added with `+` bypasses Hydra's schema check and would be dropped silently (`+trainer.max_stepz=3`
    trains the default steps): merging into the bare schema finds it."""
    try:
        OmegaConf.merge(_bare_schema(schema), OmegaConf.to_container(cfg))  # plain: no flags carried over
    except ConfigKeyError as err:
        key = getattr(err, "full_key", None) or str(err)
        raise ConfigError(f"unknown config key {key!r} (a typo, or a key added with '+' that no schema has).") from err


@functools.cache
def _bare_schema(schema: type) -> DictConfig:
    """The schema's defaults as a structured config, built once (20 ms for TrainConfig); merge copies it."""
    return OmegaConf.structured(schema)


def to_train_config(cfg: DictConfig | TrainConfig) -> TrainConfig:
    return follow_training_format(to_typed(cfg, TrainConfig, validate))


def load_run_config(run_dir: Path) -> TrainConfig:
    """The config a train.py run dir was made with (schema defaults fill keys added since)."""
    saved = OmegaConf.load(run_dir / RESOLVED_CONFIG)
    return to_train_config(OmegaConf.merge(OmegaConf.structured(TrainConfig), saved))


def applicable(cfg: T) -> T:
    """Keep only the adapter and quantization settings the run's method uses, so a full or untuned run carries no
    LoRA rank and an unquantized one no quantization dtype: in its resolved config, its W&B config and the report."""
    adapter, quant = getattr(cfg, "adapter", None), getattr(cfg, "quantization", None)
    if isinstance(adapter, LoraAdapterConfig) and adapter.method not in LORA_METHODS:
        cfg.adapter = AdapterConfig(method=adapter.method)  # type: ignore[attr-defined]
    if isinstance(quant, BitsAndBytesQuantConfig) and quant.mode == QuantMode.none:
        cfg.quantization = QuantizationConfig()  # type: ignore[attr-defined]
    return cfg


def to_plain_dict(cfg: Any) -> dict[str, Any]:
    """A resolved, JSON-able dict of a config (for W&B, results.json and the report)."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    plain = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    assert isinstance(plain, dict)
    return plain


def register_resolvers() -> None:
    """Resolvers the YAMLs use; every entry script registers them before Hydra composes."""
    # `${medtune.first_set:a,b}`: a unless it is null. (`oc.select` falls back only for a *missing* key, and
    # `resume` exists with the value null, so the run dir needs this.)
    OmegaConf.register_new_resolver(
        "medtune.first_set", lambda value, fallback: fallback if value is None else value, replace=True
    )
    # A single run under SLURM lives in outputs/slurm-<job id>: a requeued job (same id) finds its run again.
    OmegaConf.register_new_resolver(
        "medtune.slurm_run_dir",
        lambda: f"outputs/slurm-{os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else None,
        replace=True,
    )
    # A multirun cell's dir is named by its overrides alone (no job number), so a re-run finds it again.
    OmegaConf.register_new_resolver("medtune.cell", lambda overrides: overrides or "no-overrides", replace=True)


# The config groups: a wheel ships the top-level conf/ as medtune/conf (setup.py); the clone (an editable install,
# or PYTHONPATH=src) reads the top-level conf/ itself, so the groups have one source.
_SHIPPED_CONF = Path(__file__).resolve().parent / "conf"
CONF_DIR = _SHIPPED_CONF if _SHIPPED_CONF.is_dir() else Path(__file__).resolve().parents[2] / "conf"


def compose_train(*overrides: str) -> DictConfig:
    """train.py's config composed with overrides, as Hydra composes it for the script (Hydra's compose API); inside
    a running entry script Hydra is already initialized on the same groups."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def register_configs() -> None:
    """Register the schemas; primary YAMLs name them first in their defaults lists."""
    register_resolvers()
    store_once("train_schema", TrainConfig)
    for name, (adapter, quantization) in TUNING_METHODS.items():  # `tuning=qlora` = adapter=lora quantization=nf4
        overrides = [{"override /adapter": str(adapter)}, {"override /quantization": str(quantization)}]
        store_once(name, {"defaults": overrides}, group="tuning", package="_global_")


def store_once(name: str, node: Any, group: str | None = None, package: str | None = None) -> None:
    """Put a config in Hydra's ConfigStore unless it is there: `store` rebuilds the structured config (0.1-0.2 s for
    TrainConfig, paid by each in-process compose) and each load deep-copies it, so one registration serves all."""
    store = ConfigStore.instance()
    folder = store.repo
    for part in group.split("/") if group else ():
        folder = folder.get(part, {})
    if f"{name}.yaml" not in folder:
        store.store(name=name, node=node, group=group, package=package)
