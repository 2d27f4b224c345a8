"""Packing a batch's examples into as few rows as fit, attention kept per example (`dataset.packing`).

A batch stays the same examples as with padding (so `trainer.batch_size` still counts examples and the loss of a
step is the same mean over the same response tokens); only their layout changes. Each row holds whole examples
whose position ids restart at 0, and transformers keeps attention inside each example from those positions:
flash kernels get the boundaries as `cu_seq_lens` (variable-length attention, no mask), sdpa/eager a
block-diagonal causal mask, flex_attention a block mask that skips the blocks between examples. A row's padding
tail is a sequence of its own (positions restart, labels ignored), so no real token attends to it.

Strategies (medtune.enums.PackingStrategy), and when `dataset.packing=auto` takes each (`choose_packing`):

    varlen    the batch in one row, no padding         flash_attention_2/3 and kernels-hub kernels: their cost
                                                       grows with each example's own length only
    bucketed  the batch in one row padded to a         flex_attention: it compiles a kernel per row length, so
              bucket length (a bounded set)            lengths are rounded up to one of ~4 per doubling
    bins      best-fit-decreasing into rows: on a      sdpa/eager: a dense kernel computes all of a row's
              CPU of the length of least estimated     length-squared attention, the rest grows with its length;
              cost (`dense_bins`), on a GPU no longer  the cheapest layout is never costlier than padding, and
              than the batch's longest example         on a GPU long masked rows run far below their arithmetic;
                                                       a batch that packs no tighter is simply padded
    padding   padded to the batch's longest example    dataset.packing=false; stage=pretrain (equal blocks); a
                                                       model whose forward takes no position ids
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medtune.enums import PackingStrategy, Stage
from medtune.errors import ConfigError

IGNORE_INDEX = -100  # label value the loss skips
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")  # packing hands them cu_seq_lens directly
BUCKETS_PER_OCTAVE = 4  # flex_attention row lengths per doubling: at most 1/4 of a row is padding
BUCKET_QUANTUM = 128  # flex_attention's block size: row lengths are multiples of it
PACKING_SETTINGS = ("auto", True, False)
ATTENTION_TOKENS_PER_HIDDEN = 6  # a row of 6 x hidden_size tokens spends as much on dense attention as on the rest


@dataclass(frozen=True)
class PackingChoice:
    """What a run does with its batches, and the one-line reason the run prints."""

    strategy: PackingStrategy
    reason: str
    rows_by_cost: bool = False  # bins: row length by estimated cost (dense_bins), else no longer than the longest

    def line(self, setting: Any) -> str:
        return f"packing: {self.strategy} (dataset.packing={_setting_name(setting)}: {self.reason})"


def check_packing_setting(value: Any) -> None:
    """`dataset.packing` is auto, true or false (Hydra reads `true`/`false` as booleans); anything else stops."""
    if type(value) not in (bool, str) or value not in PACKING_SETTINGS:
        raise ConfigError(f"dataset.packing={value!r} is not one of auto, true, false.")


def is_varlen_kernel(attn_implementation: str) -> bool:
    """Flash kernels (and kernels-hub ones, all flash-style) read packed rows as variable-length sequences."""
    return attn_implementation in VARLEN_ATTENTION or "/" in attn_implementation


def choose_packing(
    setting: Any,
    attn_implementation: str,
    stage: str = Stage.sft,
    reads_position_ids: bool = True,
    device: str = "cpu",
) -> PackingChoice:
    """The one rule deciding how a run lays out its batches (the module docstring gives the table).

    `true` packs the way the kernel packs best; `auto` does the same where something can be gained: not for
    stage=pretrain (every block is already `dataset.block_size` tokens) and not for a model whose forward takes no
    position ids (its examples could not be kept apart in a row). The device decides how long sdpa/eager rows may
    grow: on a CPU a dense kernel's cost follows its arithmetic, so the rows take the length of least estimated
    cost; on a GPU a masked dense row runs far below its arithmetic (one long row: 0.12x padding's tokens/s on an
    H100, BENCHMARKS.md), so rows stay no longer than the batch's longest example, as padding's are.
    """
    check_packing_setting(setting)
    if setting is False:
        return PackingChoice(PackingStrategy.padding, "padding to the batch's longest example")
    if not reads_position_ids:
        if setting is True:
            raise ConfigError(
                "dataset.packing=true needs a model whose forward takes position_ids (to keep packed examples "
                "apart); this one does not: set dataset.packing=auto or false."
            )
        return PackingChoice(PackingStrategy.padding, "the model takes no position ids, so packed examples would mix")
    if setting == "auto" and stage == Stage.pretrain:
        return PackingChoice(PackingStrategy.padding, "pretraining blocks are all block_size tokens, nothing to pack")
    if is_varlen_kernel(attn_implementation):
        return PackingChoice(
            PackingStrategy.varlen, f"{attn_implementation} attends per example in one row without padding"
        )
    if attn_implementation == "flex_attention":
        return PackingChoice(
            PackingStrategy.bucketed,
            "flex_attention compiles a kernel per row length, so the one row is padded to one of a few lengths",
        )
    if device == "cpu":
        return PackingChoice(
            PackingStrategy.bins,
            f"{attn_implementation} attention costs a row's length squared, so examples go best-fit into rows of "
            "the length that costs least on a CPU, never more than padding",
            rows_by_cost=True,
        )
    return PackingChoice(
        PackingStrategy.bins,
        f"{attn_implementation} attention over one long row runs far slower than padding on a GPU ({device}), so "
        "examples go best-fit into rows no longer than the batch's longest",
    )


def model_reads_position_ids(model: Any) -> bool:
    """Whether the (base of a peft) model's forward takes position ids, which packing keeps examples apart with."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "position_ids" in inspect.signature(base.forward).parameters


def _setting_name(setting: Any) -> str:
    return str(setting).lower()


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of at most `capacity`: longest first, each into the fullest bin it
    still fits (TRL's `bfd` strategy, here per batch: a few dozen items, so a linear scan beats a segment tree)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    room: list[int] = []
    for index in order:
        length = lengths[index]
        if length > capacity:
            raise ValueError(f"an example of {length} tokens does not fit a bin of {capacity}")
        fits = [b for b in range(len(bins)) if room[b] >= length]
        if fits:
            best = min(fits, key=lambda b: room[b])
            bins[best].append(index)
            room[best] -= length
        else:
            bins.append([index])
            room.append(capacity - length)
    return bins


def dense_row_cost(rows: int, width: int, hidden_size: int) -> float:
    """Relative cost of a forward/backward over `rows` x `width` slots with dense (sdpa/eager) attention.

    Per token a layer's projections and MLP cost ~12 d^2 multiply-adds; attention costs ~2 d per (query, key)
    pair, and a dense kernel computes all width^2 pairs of a row, masked or not: 12 d^2 w (1 + w / 6d) per row.
    """
    return rows * width * (1 + width / (ATTENTION_TOKENS_PER_HIDDEN * hidden_size))


def dense_bins(lengths: Sequence[int], hidden_size: int) -> list[list[int]]:
    """The best-fit-decreasing bins of least `dense_row_cost`, over capacities from the longest example (rows no
    longer than padding's, so never costlier than padding) up to the whole batch in one row: short rows pay
    padding slots, long rows pay attention, and which wins depends on the model's width."""
    longest, total = max(lengths), sum(lengths)
    best: tuple[float, list[list[int]]] | None = None
    for k in range(1, len(lengths) + 1):
        bins = best_fit_decreasing(lengths, max(longest, math.ceil(total / k)))
        width = max(sum(lengths[i] for i in members) for members in bins)
        cost = dense_row_cost(len(bins), width, hidden_size)
        if best is None or cost < best[0]:
            best = (cost, bins)
    assert best is not None
    return best[1]


def bucket_length(length: int, quantum: int = BUCKET_QUANTUM, per_octave: int = BUCKETS_PER_OCTAVE) -> int:
    """`length` rounded up to a multiple of max(quantum, 2**floor(log2 length) / per_octave): per_octave lengths per
    doubling, so at most 1/per_octave of a row (or less than one quantum) is padding, ~20 lengths up to 8k tokens."""
    step = max(quantum, 2 ** (max(length, 1).bit_length() - 1) // per_octave)
    return step * math.ceil(length / step)


class PackingCollator:
    """Lays out a batch of tokenized examples as its strategy says (see the module docstring)."""

    def __init__(
        self, strategy: PackingStrategy, pad_token_id: int, hidden_size: int | None, padding_collator: Any = None
    ) -> None:
        from transformers import DataCollatorWithFlattening

        self.strategy = strategy
        self.pad_token_id = pad_token_id
        self.hidden_size = hidden_size  # bins: how much a row's attention weighs against its tokens
        self.padding_collator = padding_collator  # bins: a batch that packs no tighter is just padded
        self.flatten = DataCollatorWithFlattening(
            return_position_ids=True,
            separator_id=IGNORE_INDEX,  # a row never predicts an example's first token from the one before
            return_flash_attn_kwargs=strategy == PackingStrategy.varlen,
        )

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if self.strategy == PackingStrategy.varlen:
            return self.flatten(features)
        if self.strategy == PackingStrategy.bucketed:
            row = self.flatten(features)
            return _pad_rows([row], bucket_length(row["input_ids"].shape[1]), self.pad_token_id)
        lengths = [len(f["input_ids"]) for f in features]
        bins = (
            best_fit_decreasing(lengths, max(lengths))
            if self.hidden_size is None
            else dense_bins(lengths, self.hidden_size)
        )
        if len(bins) == len(features) and self.padding_collator is not None:
            return self.padding_collator(features)
        rows = [self.flatten([features[i] for i in members]) for members in bins]
        return _pad_rows(rows, max(row["input_ids"].shape[1] for row in rows), self.pad_token_id)


def _pad_rows(rows: list[dict[str, Any]], length: int, pad_token_id: int) -> dict[str, Any]:
    """Stack one-row batches into `length`-token rows; each padding tail restarts its positions, so it is a
    sequence of its own that no real token attends to, and its labels are ignored."""
    import torch

    def tail(row: dict[str, Any], key: str, value: int | None) -> Any:
        missing = length - row["input_ids"].shape[1]
        fill = torch.arange(missing) if value is None else torch.full((missing,), value)
        return torch.cat([row[key][0], fill.to(row[key].dtype)])

    return {
        "input_ids": torch.stack([tail(row, "input_ids", pad_token_id) for row in rows]),
        "labels": torch.stack([tail(row, "labels", IGNORE_INDEX) for row in rows]),
        "position_ids": torch.stack([tail(row, "position_ids", None) for row in rows]),
    }
