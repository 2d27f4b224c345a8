"""Instruction records in, tokenized training examples out.

Records are `{"instruction", "input"?, "output"}` (what generate_data.py writes). Every record is validated
before any weights load, and a bad one is reported by file, line and field. Prompt tokens are masked out of
the loss unless `train_on_inputs` (with `prompt_template=chat`, everything but the assistant's turn: medtune.chat);
packing lays a batch's examples out in as few rows as fit, position ids restarting per example, so attention
never crosses examples (medtune.packing).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtune import demo_assets
from medtune.chat import ChatFormat
from medtune.config import DatasetConfig
from medtune.enums import DatasetSource, PackingStrategy, Stage
from medtune.errors import DataError
from medtune.jsonl import nonblank_lines, read_jsonl_objects
from medtune.packing import IGNORE_INDEX, PackingChoice, PackingCollator
from medtune.prompts import CHAT_TEMPLATE, PromptTemplate, get_template, user_content

if TYPE_CHECKING:  # datasets and transformers load only to tokenize: train.py reads (and checks) data before torch
    from datasets import Dataset
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

REQUIRED_FIELDS = ("instruction", "output")


@dataclass(frozen=True)
class Record:
    instruction: str
    input: str
    output: str


@dataclass(frozen=True)
class Splits:
    train: list[Any]  # Records for stage=sft, text strings for stage=pretrain
    heldout: list[Any]


def read_jsonl_records(path: str | Path) -> list[Record]:
    """Parse and validate an instruction JSONL file; the first bad line stops with its location."""
    path = Path(path).expanduser()
    records = [record_from_mapping(obj, path=path, line=number) for number, obj in read_jsonl_objects(path)]
    if not records:
        raise DataError("no records: the file is empty", path=path)
    return records


def record_from_mapping(obj: Any, path: str | Path | None = None, line: int | None = None) -> Record:
    """Validate one record; `input` is optional, the other fields must be non-empty strings."""
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=line)
    for name in REQUIRED_FIELDS:
        value = obj.get(name)
        if not isinstance(value, str) or not value.strip():
            problem = "is missing" if value is None else "must be a non-empty string"
            raise DataError(f"required field {problem}", path=path, line=line, field=name)
    input_text = obj.get("input") or ""
    if not isinstance(input_text, str):
        raise DataError("must be a string when present", path=path, line=line, field="input")
    return Record(instruction=obj["instruction"], input=input_text, output=obj["output"])


def read_text_documents(path: str | Path) -> list[str]:
    """Raw text for continual pretraining: one document per non-blank line."""
    path = Path(path).expanduser()
    documents = [line.strip() for _, line in nonblank_lines(path)]
    if not documents:
        raise DataError("no text: the file is empty", path=path)
    return documents


def load_splits(ds: DatasetConfig, stage: str, seed: int) -> Splits:
    """Training and held-out data for a run, validated before any model loads."""
    if ds.source == DatasetSource.demo:
        if stage == Stage.pretrain:
            return _split(read_text_documents(demo_assets.corpus_path()), ds, seed)
        return _limit(
            Splits(read_jsonl_records(demo_assets.train_path()), read_jsonl_records(demo_assets.heldout_path())), ds
        )
    if ds.source == DatasetSource.text:
        assert ds.path is not None  # validate() guarantees it
        return _split(read_text_documents(ds.path), ds, seed)
    if ds.source == DatasetSource.jsonl:
        assert ds.path is not None
        train = read_jsonl_records(ds.path)
        if ds.eval_path:
            return _limit(Splits(train, read_jsonl_records(ds.eval_path)), ds)
        return _split(train, ds, seed)
    return _load_hub_splits(ds, stage, seed)


def _load_hub_splits(ds: DatasetConfig, stage: str, seed: int) -> Splits:
    import datasets

    def rows(split: str) -> list[Any]:
        try:
            table = datasets.load_dataset(ds.path, ds.name, split=split)
        except Exception as err:  # datasets raises many types for "not found / offline"
            raise DataError(f"cannot load hub dataset split {split!r}: {err}", path=ds.path) from err
        if stage == Stage.pretrain:
            if "text" not in table.column_names:
                raise DataError("stage=pretrain needs a 'text' column", path=ds.path, field="text")
            return [row["text"] for row in table if row["text"]]
        return [record_from_mapping(row, path=f"{ds.path}[{split}]", line=i + 1) for i, row in enumerate(table)]

    train = rows(ds.split)
    if not train:
        raise DataError(f"split {ds.split!r} is empty", path=ds.path)
    if ds.eval_path:
        return _limit(Splits(train, rows(ds.eval_path)), ds)
    return _split(train, ds, seed)


def _split(items: list[Any], ds: DatasetConfig, seed: int) -> Splits:
    """Hold out a seeded random fraction (at least one item when the fraction is positive)."""
    shuffled = items[:]
    random.Random(seed).shuffle(shuffled)
    n_heldout = max(1, round(len(items) * ds.eval_fraction)) if ds.eval_fraction > 0 and len(items) > 1 else 0
    return _limit(Splits(train=shuffled[n_heldout:], heldout=shuffled[:n_heldout]), ds)


def _limit(splits: Splits, ds: DatasetConfig) -> Splits:
    if ds.limit is None:
        return splits
    return Splits(train=splits.train[: ds.limit], heldout=splits.heldout[: max(1, ds.limit // 10)])


def tokenize_record(
    record: Record,
    tokenizer: PreTrainedTokenizerBase,
    template: PromptTemplate,
    max_input_tokens: int,
    max_target_tokens: int,
    train_on_inputs: bool,
) -> dict[str, list[int]]:
    """Prompt and response tokenized apart, so the label mask falls exactly on the response tokens."""
    prompt_ids = truncate_prompt(
        tokenizer.encode(template.render(record.instruction, record.input), add_special_tokens=False),
        tokenizer.encode(template.response_header, add_special_tokens=False),
        max_input_tokens,
    )
    target_ids = tokenizer.encode(record.output, add_special_tokens=False)[: max_target_tokens - 1]
    target_ids.append(tokenizer.eos_token_id)  # the model learns to stop after its answer
    prompt_labels = prompt_ids if train_on_inputs else [IGNORE_INDEX] * len(prompt_ids)
    return {"input_ids": prompt_ids + target_ids, "labels": prompt_labels + target_ids}


def tokenize_conversation(record: Record, chat: ChatFormat, ds: DatasetConfig) -> dict[str, list[int]]:
    """A record as a conversation in the tokenizer's chat template; labels on the assistant's tokens only (its
    end-of-turn token included). The user's text is cut to max_input_tokens, the answer to max_target_tokens with
    the end-of-turn token counted, before the template adds its markers (which are never cut)."""
    user = chat.truncate(user_content(record.instruction, record.input), ds.max_input_tokens)
    answer = chat.truncate(record.output, ds.max_target_tokens - 1)
    ids, assistant = chat.encode(chat.conversation(user, answer))
    learned = [True] * len(ids) if ds.train_on_inputs else assistant
    return {"input_ids": ids, "labels": [t if on else IGNORE_INDEX for t, on in zip(ids, learned, strict=True)]}


def truncate_prompt(prompt_ids: list[int], header_ids: list[int], max_tokens: int) -> list[int]:
    """Cut an over-long prompt in the middle of its content, keeping the response header at the end."""
    if len(prompt_ids) <= max_tokens:
        return prompt_ids
    keep_tail = len(header_ids) if prompt_ids[-len(header_ids) :] == header_ids else 0
    return prompt_ids[: max_tokens - keep_tail] + prompt_ids[len(prompt_ids) - keep_tail :]


def tokenize_blocks(documents: list[str], tokenizer: PreTrainedTokenizerBase, block_size: int) -> list[dict]:
    """Continual pretraining: documents joined by EOS and cut into full blocks, every token a label."""
    stream: list[int] = []
    for document in documents:
        # verbose=False: documents are packed into block_size blocks, so a long one is no over-long model input
        stream.extend(tokenizer.encode(document, add_special_tokens=False, verbose=False))
        stream.append(tokenizer.eos_token_id)
    n_blocks = len(stream) // block_size
    if n_blocks == 0:
        raise DataError(f"the text holds {len(stream)} tokens, fewer than one block of dataset.block_size={block_size}")
    blocks = [stream[i * block_size : (i + 1) * block_size] for i in range(n_blocks)]
    return [{"input_ids": block, "labels": block[:]} for block in blocks]


def build_datasets(
    splits: Splits,
    tokenizer: PreTrainedTokenizerBase,
    ds: DatasetConfig,
    stage: str,
    template_kwargs: dict[str, Any] | None = None,
) -> tuple[Dataset, Dataset | None]:
    """Tokenized train and held-out `datasets.Dataset`s for the Trainer (`template_kwargs`: the chat template's
    variables, base_model.chat_template_kwargs)."""

    def encode(items: list[Any]) -> list[dict]:
        if stage == Stage.pretrain:
            return tokenize_blocks(items, tokenizer, ds.block_size)
        if ds.prompt_template == CHAT_TEMPLATE:
            chat = ChatFormat(tokenizer, ds.system_prompt, dict(template_kwargs or {}))
            return [tokenize_conversation(r, chat, ds) for r in items]
        template = get_template(ds.prompt_template)
        return [
            tokenize_record(r, tokenizer, template, ds.max_input_tokens, ds.max_target_tokens, ds.train_on_inputs)
            for r in items
        ]

    from datasets import Dataset

    heldout = Dataset.from_list(encode(splits.heldout)) if splits.heldout else None
    return Dataset.from_list(encode(splits.train)), heldout


def build_collator(
    tokenizer: PreTrainedTokenizerBase,
    strategy: PackingStrategy = PackingStrategy.padding,
    hidden_size: int | None = None,
) -> Any:
    """Padding to the batch's longest example, or a packed layout (medtune.packing: the rule and the strategies;
    `hidden_size`, the model's width, weighs attention against the other work when `bins` sizes its rows; without
    it bins are no longer than the batch's longest example).

    A packed row carries no attention mask: transformers keeps attention inside each example from the restarting
    position ids (flash kernels: variable-length sequences; sdpa/eager/flex_attention: a block-diagonal mask).
    """
    from transformers import DataCollatorForSeq2Seq

    padding = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")
    if strategy == PackingStrategy.padding:
        return padding
    return PackingCollator(strategy, tokenizer.pad_token_id, hidden_size, padding)


def collator_for(tokenizer: PreTrainedTokenizerBase, choice: PackingChoice, model: Any) -> Any:
    """The collator of a packing choice for this model: bins sized by cost weigh attention by the model's width."""
    width = getattr(model.config, "hidden_size", None) if choice.rows_by_cost else None
    return build_collator(tokenizer, choice.strategy, width)
