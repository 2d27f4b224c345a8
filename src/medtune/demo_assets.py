"""Paths of the bundled Japanese medical demo data (built by scripts/build_demo_data.py from demo_facts.json).

Resolved through importlib.resources, so they work from a source checkout and from an installed wheel alike.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def asset_path(name: str) -> Path:
    """A file in medtune/assets; the package ships as plain files, so the resource is a real path."""
    return Path(str(files("medtune") / "assets" / name))


def facts_path() -> Path:
    """The hand-written fact table every other demo file is generated from."""
    return asset_path("demo_facts.json")


def corpus_path() -> Path:
    """Medical prose, one paragraph per line: tokenizer training, tiny-model pretraining, stage=pretrain."""
    return asset_path("medical_corpus.txt")


def train_path() -> Path:
    """Instruction records for tuning (`{"instruction", "input", "output"}` per line)."""
    return asset_path("demo_train.jsonl")


def heldout_path() -> Path:
    """Instruction records in phrasings tuning never sees, for the held-out loss."""
    return asset_path("demo_heldout.jsonl")


def questions_path() -> Path:
    """One exam-style 5-choice question per fact, in IgakuQA's record shape."""
    return asset_path("demo_questions.jsonl")
