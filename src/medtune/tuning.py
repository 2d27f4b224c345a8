"""The comparison matrix's columns (tuning methods) and the rules each adapter method sets on the quantization it
trains on. Torch-free, like the schema: medtune.config.validate runs `check_adapter_method` at composition."""

from __future__ import annotations

from typing import Any

from medtune.enums import AdapterMethod, QuantMode
from medtune.errors import ConfigError

# The comparison matrix's columns: a tuning method is an adapter × quantization pair. The `tuning` config group
# (`tuning=qlora`), the W&B run names and the report's columns (their order and labels) all read this table.
UNTUNED = "untuned"  # the column of a base model as it is; `untuned-<mode>` for a quantized one
TUNING_METHODS: dict[str, tuple[AdapterMethod, QuantMode]] = {
    UNTUNED: (AdapterMethod.none, QuantMode.none),
    "lora": (AdapterMethod.lora, QuantMode.none),
    "qlora": (AdapterMethod.lora, QuantMode.nf4),
    "dora": (AdapterMethod.dora, QuantMode.none),
    "rslora": (AdapterMethod.rslora, QuantMode.none),
    "pissa": (AdapterMethod.pissa, QuantMode.none),
    "olora": (AdapterMethod.olora, QuantMode.none),
    "loftq": (AdapterMethod.loftq, QuantMode.nf4),  # the QLoRA initialisation: a 4-bit base by definition
    "loraplus": (AdapterMethod.loraplus, QuantMode.none),
    "vera": (AdapterMethod.vera, QuantMode.none),
    "eva": (AdapterMethod.eva, QuantMode.none),
    "full": (AdapterMethod.full, QuantMode.none),
}

# The quantizations a method can train on, where it cannot take every one (peft's own limits).
ALLOWED_QUANTIZATION: dict[AdapterMethod, tuple[QuantMode, ...]] = {
    # peft's pissa_init takes the SVD of float weights and writes the residual back (TypeError on 4/8-bit weights)
    AdapterMethod.pissa: (QuantMode.none,),
    # LoftQ fits the adapter to the error of NF4 quantization: without 4-bit weights there is nothing to fit
    AdapterMethod.loftq: (QuantMode.nf4,),
}
WHY_NOT: dict[AdapterMethod, str] = {
    AdapterMethod.pissa: "PiSSA initialises from an SVD of full-precision weights and rewrites them, which peft "
    "cannot do on quantized weights; for a 4-bit base use tuning=loftq (or adapter=olora, which peft re-quantizes)",
    AdapterMethod.loftq: "LoftQ initialises LoRA on the quantization error of 4-bit NF4 weights "
    "(tuning=loftq sets both)",
}


def tuning_method(adapter: str, quantization: str) -> str:
    """The matrix column of an adapter × quantization pair; a pair outside the table is named `<adapter>-<mode>`."""
    for name, pair in TUNING_METHODS.items():
        if pair == (adapter, quantization):
            return name
    return f"{UNTUNED if adapter == AdapterMethod.none else adapter}-{quantization}"


def check_adapter_method(adapter: Any, quantization: QuantMode) -> None:
    """The method applies to this quantization and gets the keys it reads (adapter: a LoraAdapterConfig)."""
    method = AdapterMethod(adapter.method)
    allowed = ALLOWED_QUANTIZATION.get(method)
    if allowed is not None and quantization not in allowed:
        raise ConfigError(
            f"adapter={method} cannot train on quantization={quantization}: {WHY_NOT[method]}; "
            f"use quantization={' or '.join(allowed)}."
        )
    ratio = adapter.loraplus_lr_ratio
    if method == AdapterMethod.loraplus and ratio is None:
        raise ConfigError("adapter=loraplus needs adapter.loraplus_lr_ratio (B's learning rate over A's, e.g. 16).")
    if method != AdapterMethod.loraplus and ratio is not None:
        raise ConfigError(
            f"adapter.loraplus_lr_ratio={ratio} applies only to adapter=loraplus (got adapter={method}); remove it."
        )
