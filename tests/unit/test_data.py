"""Records, loss masks, truncation, packing: the exact tokens the model is trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medtune.config import DatasetConfig
from medtune.data import (
    IGNORE_INDEX,
    Record,
    build_collator,
    load_splits,
    read_jsonl_records,
    tokenize_blocks,
    tokenize_record,
    truncate_prompt,
)
from medtune.enums import PackingStrategy
from medtune.errors import DataError
from medtune.packing import choose_packing
from medtune.prompts import get_template

RECORD = Record(instruction="2型糖尿病の第一選択薬は何ですか。", input="", output="メトホルミン")


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    return AutoTokenizer.from_pretrained(tiny_models["tiny_gptneox"].path)


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_prompt_tokens_are_masked_and_response_tokens_are_labels(tokenizer):
    template = get_template("alpaca_ja")
    example = tokenize_record(RECORD, tokenizer, template, 256, 64, train_on_inputs=False)
    prompt_ids = tokenizer.encode(template.render(RECORD.instruction, RECORD.input), add_special_tokens=False)
    response_ids = [*tokenizer.encode(RECORD.output, add_special_tokens=False), tokenizer.eos_token_id]
    assert example["input_ids"] == prompt_ids + response_ids
    for position, (token, label) in enumerate(zip(example["input_ids"], example["labels"], strict=True)):
        expected = IGNORE_INDEX if position < len(prompt_ids) else token
        assert label == expected, f"position {position}"
    assert example["labels"][-1] == tokenizer.eos_token_id


def test_train_on_inputs_makes_every_token_a_label(tokenizer):
    example = tokenize_record(RECORD, tokenizer, get_template("alpaca_ja"), 256, 64, train_on_inputs=True)
    assert example["labels"] == example["input_ids"]


def test_response_is_truncated_to_max_target_tokens_and_still_ends_with_eos(tokenizer):
    long = Record(instruction="説明してください。", input="", output="糖尿病" * 100)
    example = tokenize_record(long, tokenizer, get_template("alpaca_ja"), 256, 8, train_on_inputs=False)
    labels = [t for t in example["labels"] if t != IGNORE_INDEX]
    assert len(labels) == 8 and labels[-1] == tokenizer.eos_token_id


def test_long_prompt_is_cut_in_the_middle_keeping_the_response_header(tokenizer):
    template = get_template("alpaca_ja")
    long = Record(instruction="症状" * 300, input="", output="A")
    example = tokenize_record(long, tokenizer, template, 64, 16, train_on_inputs=False)
    prompt = [t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label == IGNORE_INDEX]
    header = tokenizer.encode(template.response_header, add_special_tokens=False)
    assert len(prompt) == 64 and prompt[-len(header) :] == header
    assert truncate_prompt([1, 2, 3], [3], 10) == [1, 2, 3]


def test_packing_collator_restarts_positions_and_separates_labels(tokenizer):
    template = get_template("alpaca_ja")
    examples = [tokenize_record(RECORD, tokenizer, template, 256, 64, False) for _ in range(2)]
    batch = build_collator(tokenizer, PackingStrategy.varlen)(examples)
    n = len(examples[0]["input_ids"])
    assert batch["input_ids"].shape == (1, 2 * n)
    assert batch["position_ids"][0].tolist() == list(range(n)) * 2
    assert batch["labels"][0, n].item() == IGNORE_INDEX  # never predict example 2 from example 1
    assert "attention_mask" not in batch  # a mask would override the per-example block structure


@pytest.mark.parametrize("attn", ["flash_attention_2", "flash_attention_3", "kernels-community/flash-attn"])
def test_packing_hands_varlen_kernels_the_sequence_boundaries(tokenizer, attn):
    template = get_template("alpaca_ja")
    examples = [tokenize_record(RECORD, tokenizer, template, 256, 64, False) for _ in range(2)]
    n = len(examples[0]["input_ids"])
    batch = build_collator(tokenizer, choose_packing(True, attn).strategy)(examples)
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == [0, n, 2 * n]
    assert batch["max_length_q"] == n and "attention_mask" not in batch
    sdpa = build_collator(tokenizer, choose_packing(True, "sdpa").strategy)
    assert "cu_seq_lens_q" not in sdpa(examples)  # sdpa: positions only


@pytest.mark.parametrize(("arch", "attn"), [("tiny_gptneox", "sdpa"), ("tiny_llama", "sdpa"), ("tiny_llama", "eager")])
def test_packed_examples_do_not_attend_to_each_other(tiny_models, arch, attn):
    model = AutoModelForCausalLM.from_pretrained(tiny_models[arch].path, attn_implementation=attn).eval()
    first, second = torch.randint(5, 500, (1, 11)), torch.randint(5, 500, (1, 7))
    packed = torch.cat([first, second], dim=1)
    positions = torch.cat([torch.arange(11), torch.arange(7)]).unsqueeze(0)
    with torch.no_grad():
        packed_logits = model(input_ids=packed, position_ids=positions, use_cache=False).logits
        alone_logits = model(input_ids=second, use_cache=False).logits
    torch.testing.assert_close(packed_logits[0, 11:], alone_logits[0], atol=1e-4, rtol=1e-4)
    # Control: without restarting positions the second example does see the first.
    with torch.no_grad():
        leaked = model(input_ids=packed, use_cache=False).logits
    assert (leaked[0, 11:] - alone_logits[0]).abs().max() > 1e-3


def test_pretraining_blocks_are_full_and_every_token_is_a_label(tokenizer):
    blocks = tokenize_blocks(["糖尿病は代謝疾患である。" * 20, "結核は感染症である。" * 20], tokenizer, 32)
    assert blocks and all(len(b["input_ids"]) == 32 and b["labels"] == b["input_ids"] for b in blocks)


def test_jsonl_records_are_read_with_optional_input(tmp_path):
    path = write_lines(
        tmp_path / "ok.jsonl",
        json.dumps({"instruction": "問1", "output": "答1"}, ensure_ascii=False),
        "",
        json.dumps({"instruction": "問2", "input": "文脈", "output": "答2"}, ensure_ascii=False),
    )
    assert read_jsonl_records(path) == [Record("問1", "", "答1"), Record("問2", "文脈", "答2")]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"instruction": "q", "output": "a"}', '{"instruction": "q", "output": '], r"bad\.jsonl:2: malformed JSON"),
        (['{"instruction": "q"}'], r"bad\.jsonl:1: required field is missing \(field 'output'\)"),
        (['{"instruction": "  ", "output": "a"}'], r"bad\.jsonl:1: .*non-empty string \(field 'instruction'\)"),
        (['["q", "a"]'], r"bad\.jsonl:1: expected a JSON object"),
        (['{"instruction": "q", "input": 3, "output": "a"}'], r"bad\.jsonl:1: .*\(field 'input'\)"),
        ([], r"bad\.jsonl: no records"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path, lines, message):
    with pytest.raises(DataError, match=message):
        read_jsonl_records(write_lines(tmp_path / "bad.jsonl", *lines))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: file does not exist"):
        read_jsonl_records(tmp_path / "nope.jsonl")


def test_jsonl_split_holds_out_a_seeded_fraction(tmp_path):
    lines = [json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(40)]
    ds = DatasetConfig(source="jsonl", path=str(write_lines(tmp_path / "r.jsonl", *lines)), eval_fraction=0.1)
    first, again = load_splits(ds, "sft", seed=1), load_splits(ds, "sft", seed=1)
    assert len(first.heldout) == 4 and len(first.train) == 36
    assert first == again
    assert not set(first.heldout) & set(first.train)


def test_demo_dataset_has_training_and_heldout_records():
    splits = load_splits(DatasetConfig(source="demo"), "sft", seed=0)
    assert len(splits.train) >= 100 and len(splits.heldout) >= 10
    assert not {r.instruction for r in splits.heldout} & {r.instruction for r in splits.train}


def test_undecodable_first_line_is_located(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"instruction": "caf\u00e9", "output": "a"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.jsonl:1: not UTF-8 text"):
        read_jsonl_records(path)
