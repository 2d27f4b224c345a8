"""Packing (medtune.packing): bins that fit, every example once, labels never crossing examples, the same loss as
padding, the rule's choice per kernel, and the one line a run prints about it."""

from __future__ import annotations

import itertools
import json
import logging
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medtune.config import DatasetConfig
from medtune.data import IGNORE_INDEX, build_collator, build_datasets, load_splits
from medtune.enums import PackingStrategy
from medtune.errors import ConfigError
from medtune.packing import (
    best_fit_decreasing,
    bucket_length,
    check_packing_setting,
    choose_packing,
    dense_bins,
    dense_row_cost,
    model_reads_position_ids,
)

PACKED = (PackingStrategy.bins, PackingStrategy.varlen, PackingStrategy.bucketed)


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    return AutoTokenizer.from_pretrained(tiny_models["tiny_gptneox"].path)


@pytest.fixture(scope="module")
def demo_examples(tokenizer) -> list[dict]:
    ds = DatasetConfig(source="demo", max_input_tokens=256, max_target_tokens=128)
    train, _ = build_datasets(load_splits(ds, "sft", seed=0), tokenizer, ds, "sft")
    return [train[i] for i in range(len(train))]


@pytest.mark.parametrize("seed", range(20))
def test_bins_hold_every_item_once_and_never_overflow(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 300) for _ in range(rng.randint(1, 40))]
    capacity = rng.randint(max(lengths), 2 * max(lengths))
    bins = best_fit_decreasing(lengths, capacity)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= capacity for b in bins)
    # Best fit leaves no two bins that could have been one (else it would have merged them): fill > 1/2 on average.
    assert len(bins) <= 2 * sum(lengths) / capacity + 1


def test_best_fit_puts_an_item_in_the_fullest_bin_it_fits():
    # 7 and 6 open two bins (room 3 and 4); 3 goes where it fills the bin exactly, not first-fit's first bin.
    assert best_fit_decreasing([7, 6, 3], 10) == [[0, 2], [1]]
    with pytest.raises(ValueError, match="does not fit"):
        best_fit_decreasing([11], 10)


@pytest.mark.parametrize("seed", range(10))
def test_dense_bins_never_cost_more_than_padding(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(5, 400) for _ in range(rng.randint(1, 16))]
    for hidden in (16, 128, 4096):
        bins = dense_bins(lengths, hidden)
        width = max(sum(lengths[i] for i in b) for b in bins)
        assert dense_row_cost(len(bins), width, hidden) <= dense_row_cost(len(lengths), max(lengths), hidden)
        assert sorted(i for b in bins for i in b) == list(range(len(lengths)))


def test_dense_bins_grow_rows_with_the_models_width():
    lengths = [134, 60, 50, 40, 70, 80, 55, 44]  # a demo batch: 533 tokens, padded to 8 x 134
    narrow, wide = dense_bins(lengths, 32), dense_bins(lengths, 4096)
    assert max(sum(lengths[i] for i in b) for b in narrow) <= 134  # attention dear: rows of padding's length
    assert len(wide) == 1  # attention cheap next to the projections: one row, no padding at all


def test_bucket_lengths_are_few_and_waste_little():
    buckets = {bucket_length(n) for n in range(1, 8193)}
    assert len(buckets) <= 25  # a bounded number of compiled flex_attention shapes up to 8k tokens
    for n in (1, 128, 129, 500, 1000, 4097, 8192):
        b = bucket_length(n)
        assert b >= n and b % 128 == 0 and (b - n < 128 or b <= 1.25 * n)


@pytest.mark.parametrize("strategy", PACKED)
def test_packed_rows_keep_every_token_once_and_mask_each_examples_first_label(tokenizer, demo_examples, strategy):
    batch = demo_examples[:8]
    packed = build_collator(tokenizer, strategy, hidden_size=128)(batch)
    ids, labels, positions = packed["input_ids"], packed["labels"], packed["position_ids"]
    assert "attention_mask" not in packed and ids.shape == labels.shape == positions.shape
    found = []
    for row in range(ids.shape[0]):
        starts = [i for i in range(ids.shape[1]) if positions[row, i] == 0] + [ids.shape[1]]
        for start, end in itertools.pairwise(starts):
            assert positions[row, start:end].tolist() == list(range(end - start))
            assert labels[row, start].item() == IGNORE_INDEX  # never predicted from the example before it
            found.append((ids[row, start:end].tolist(), labels[row, start + 1 : end].tolist()))
    real = [(e["input_ids"], e["labels"][1:]) for e in batch]
    tails = [f for f in found if f not in real]
    assert sorted(map(str, real)) == sorted(map(str, (f for f in found if f in real)))  # each example once, whole
    for tail_ids, tail_labels in tails:  # the rest is padding: pad tokens, no labels
        assert set(tail_ids) == {tokenizer.pad_token_id} and set(tail_labels) <= {IGNORE_INDEX}
    if strategy == PackingStrategy.bins:
        assert ids.shape[0] < len(batch)
    if strategy == PackingStrategy.bucketed:
        assert ids.shape[1] == bucket_length(sum(len(e["input_ids"]) for e in batch))


def test_bins_pad_a_batch_that_packs_no_tighter(tokenizer, demo_examples):
    same = [demo_examples[0]] * 4  # equal lengths: one example per row either way
    batch = build_collator(tokenizer, PackingStrategy.bins, hidden_size=128)(same)
    assert batch["input_ids"].shape == (4, len(same[0]["input_ids"])) and "attention_mask" in batch


@pytest.mark.parametrize(("arch", "attn"), [("tiny_gptneox", "sdpa"), ("tiny_llama", "sdpa"), ("tiny_llama", "eager")])
def test_a_packed_batch_has_the_padded_batchs_loss_and_gradients(tiny_models, tokenizer, demo_examples, arch, attn):
    model = AutoModelForCausalLM.from_pretrained(tiny_models[arch].path, attn_implementation=attn)
    model.config.use_cache = False
    batch = demo_examples[8:16]
    n_labels = sum(sum(label != IGNORE_INDEX for label in e["labels"][1:]) for e in batch)

    def loss_and_grad(strategy):
        model.zero_grad()
        collator = build_collator(tokenizer, strategy, model.config.hidden_size)
        loss = model(**collator(batch), num_items_in_batch=n_labels).loss
        loss.backward()
        return loss.item(), model.get_input_embeddings().weight.grad.clone()

    padded_loss, padded_grad = loss_and_grad(PackingStrategy.padding)
    for strategy in PACKED:
        loss, grad = loss_and_grad(strategy)
        assert loss == pytest.approx(padded_loss, rel=1e-5), strategy
        torch.testing.assert_close(grad, padded_grad, atol=1e-6, rtol=1e-4)
    # Control: the same rows without restarting positions let examples see each other, and the loss moves.
    leaky = build_collator(tokenizer, PackingStrategy.varlen)(batch)
    leaky["position_ids"] = torch.arange(leaky["input_ids"].shape[1])[None]
    with torch.no_grad():
        assert abs(model(**leaky, num_items_in_batch=n_labels).loss.item() - padded_loss) > 1e-3


@pytest.mark.parametrize(
    ("setting", "attn", "stage", "expected"),
    [
        (False, "sdpa", "sft", PackingStrategy.padding),
        ("auto", "sdpa", "sft", PackingStrategy.bins),
        (True, "eager", "sft", PackingStrategy.bins),
        ("auto", "flash_attention_2", "sft", PackingStrategy.varlen),
        (True, "flash_attention_3", "sft", PackingStrategy.varlen),
        ("auto", "kernels-community/flash-attn", "sft", PackingStrategy.varlen),
        ("auto", "flex_attention", "sft", PackingStrategy.bucketed),
        ("auto", "sdpa", "pretrain", PackingStrategy.padding),  # equal blocks: nothing to pack
        (True, "sdpa", "pretrain", PackingStrategy.bins),  # asked for: packed (and padded where it cannot gain)
    ],
)
def test_the_rule_picks_per_kernel(setting, attn, stage, expected):
    choice = choose_packing(setting, attn, stage)
    assert choice.strategy == expected
    assert choice.line(setting).startswith(f"packing: {expected} (dataset.packing={str(setting).lower()}: ")


def test_the_device_decides_how_long_dense_rows_may_grow():
    cpu, gpu = choose_packing("auto", "sdpa", device="cpu"), choose_packing("auto", "sdpa", device="cuda")
    assert cpu.strategy == gpu.strategy == PackingStrategy.bins
    assert cpu.rows_by_cost and not gpu.rows_by_cost  # a GPU's masked dense rows: never longer than padding's
    assert choose_packing("auto", "flash_attention_2", device="cuda").strategy == PackingStrategy.varlen


def test_a_model_without_position_ids_is_padded_or_refused():
    assert choose_packing("auto", "sdpa", reads_position_ids=False).strategy == PackingStrategy.padding
    with pytest.raises(ConfigError, match=r"dataset\.packing=true needs a model whose forward takes position_ids"):
        choose_packing(True, "sdpa", reads_position_ids=False)
    assert not model_reads_position_ids(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("value", ["off", "True", 1, None])
def test_a_packing_setting_other_than_auto_true_false_stops(value):
    with pytest.raises(ConfigError, match=r"dataset\.packing=.* is not one of auto, true, false"):
        check_packing_setting(value)


def test_a_run_says_which_packing_it_chose_and_records_it(compose_config, tiny_models, tmp_path, caplog):
    from medtune.training import run

    cfg = compose_config(
        "train", "trainer.max_steps=2", "trainer.logging_steps=1", "eval.at_end=false", "wandb.mode=disabled"
    )
    with caplog.at_level(logging.INFO, logger="medtune"):
        results = run(cfg, tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("packing: ")]
    assert lines == ["packing: bins (dataset.packing=auto: " + results["packing_reason"] + ")"]
    assert json.loads((tmp_path / "results.json").read_text())["packing"] == "bins"
