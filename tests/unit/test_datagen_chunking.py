"""Chunking: sentence boundaries in Japanese, bracket safety, packing, stable ids, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtune.datagen.chunking import chunk_sources, chunk_text, sentence_spans
from medtune.datagen.config import ChunkingConfig, SourceConfig
from medtune.errors import DataError

TEXT = (
    "心房細動は頻度の高い不整脈である。患者は「胸が苦しい。眠れない。」と訴えた！？\n次の行に続く文。\n\n"
    "（閉じない括弧。ここまで\n\n新しい段落。最後"
)


def _sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def test_sentences_split_on_japanese_terminators_but_never_inside_brackets() -> None:
    assert _sentences(TEXT) == [
        "心房細動は頻度の高い不整脈である。",
        "患者は「胸が苦しい。眠れない。」と訴えた！？",
        "次の行に続く文。",
        "（閉じない括弧。ここまで",  # a blank line ends it: one stray bracket cannot swallow the file
        "新しい段落。",
        "最後",
    ]


def test_sentence_packing_respects_the_budget_and_keeps_sentences_whole() -> None:
    cfg = ChunkingConfig(method="sentences", max_chars=35, min_chars=1)
    chunks = chunk_text(TEXT, "a.txt", cfg)
    assert [c.text for c in chunks][:2] == [
        "心房細動は頻度の高い不整脈である。",
        "患者は「胸が苦しい。眠れない。」と訴えた！？\n次の行に続く文。",
    ]
    assert all(len(c.text) <= 35 for c in chunks)
    assert [(c.first_line, c.last_line) for c in chunks][:2] == [(1, 1), (1, 2)]


def test_line_chunks_give_line_ranges_skip_short_ones_and_ids_are_stable() -> None:
    text = "".join(f"{i}行目の文章はここにあります。\n" for i in range(1, 8))
    cfg = ChunkingConfig(method="lines", lines_per_chunk=3, min_chars=20)
    chunks = chunk_text(text, "b.txt", cfg)
    assert [(c.first_line, c.last_line) for c in chunks] == [(1, 3), (4, 6)]  # line 7 alone is too short
    assert chunks[0].id.startswith("b.txt:1-3:") and chunks[0].id == chunk_text(text, "b.txt", cfg)[0].id
    edited = chunk_text(text.replace("1行目", "一行目"), "b.txt", cfg)[0]
    assert edited.id != chunks[0].id and edited.id.startswith("b.txt:1-3:")


def test_bad_encoding_and_missing_file_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "sjis.txt"
    bad.write_bytes("一行目\n".encode() + "二行目".encode("shift_jis"))
    with pytest.raises(DataError, match=r"sjis.txt:2: not utf-8"):
        chunk_sources(SourceConfig(paths=[str(bad)]), ChunkingConfig())
    with pytest.raises(DataError, match="does not exist"):
        chunk_sources(SourceConfig(paths=[str(tmp_path / "none.txt")]), ChunkingConfig())
