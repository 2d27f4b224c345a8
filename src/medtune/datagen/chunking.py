"""Source text → passages ("chunks") that each become one request, with ids stable across runs.

Two methods: N lines per chunk (the study's way), or whole sentences packed up to a character
budget. Japanese sentences end at 。．！？ but never inside brackets (「…。」 is one quoted sentence
inside a longer one); a blank line always ends a sentence, so one unclosed bracket cannot swallow
the rest of a file. A chunk is an exact slice of its file, located by 1-based line range.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medtune.datagen.config import ChunkingConfig, SourceConfig
from medtune.errors import DataError

TERMINATORS = "。．！？"
OPENING = "「『（(【［[〔〈《｛{"
CLOSING = "」』）)】］]〕〉》｝}"
_PARAGRAPH = re.compile(r"\S(?:.|\n(?![ \t\u3000]*\n))*")  # text between blank lines


@dataclass(frozen=True)
class Chunk:
    source: str  # the file's name (not its directory, so a moved corpus keeps its ids)
    first_line: int
    last_line: int
    text: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def id(self) -> str:
        """file:lines:content-hash; the hash tells apart edited text at the same lines."""
        return f"{self.source}:{self.first_line}-{self.last_line}:{self.digest[:8]}"


def read_source(path: str | Path, encoding: str) -> str:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError("source file does not exist", path=path, field="source.paths")
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"not {encoding} text ({err.reason}); set source.encoding", path=path, line=line) from err


def chunk_sources(source: SourceConfig, chunking: ChunkingConfig) -> list[Chunk]:
    """Every chunk of every file, in file order then text order."""
    chunks: list[Chunk] = []
    for path in source.paths:
        text = read_source(path, source.encoding)
        chunks.extend(chunk_text(text, Path(path).name, chunking))
    if not chunks:
        raise DataError(
            f"no chunk reaches chunking.min_chars={chunking.min_chars} characters", path=", ".join(source.paths)
        )
    return chunks


def chunk_text(text: str, source: str, chunking: ChunkingConfig) -> list[Chunk]:
    spans = (
        _line_spans(text, chunking.lines_per_chunk)
        if chunking.method == "lines"
        else _pack(list(sentence_spans(text)), chunking.max_chars)
    )
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    chunks = []
    for span in spans:
        for start, end in _trimmed(text, *span):
            if end - start >= chunking.min_chars:
                first, last = (bisect.bisect_right(line_starts, offset) for offset in (start, end - 1))
                chunks.append(Chunk(source, first, last, text[start:end]))
    return chunks


def _line_spans(text: str, lines_per_chunk: int) -> Iterator[tuple[int, int]]:
    offsets = [0] + [m.end() for m in re.finditer("\n", text)]
    for i in range(0, len(offsets), lines_per_chunk):
        end = offsets[i + lines_per_chunk] if i + lines_per_chunk < len(offsets) else len(text)
        yield offsets[i], end


def sentence_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) offsets of each sentence, whitespace trimmed, in order."""
    for paragraph in _PARAGRAPH.finditer(text):
        yield from _split_paragraph(text, paragraph.start(), paragraph.end())


def _split_paragraph(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    depth, begin, i = 0, start, start
    while i < end:
        char = text[i]
        if char in OPENING:
            depth += 1
        elif char in CLOSING:
            depth = max(0, depth - 1)
        elif char in TERMINATORS and depth == 0:
            while i + 1 < end and text[i + 1] in TERMINATORS:  # "！？" ends one sentence
                i += 1
            yield from _trimmed(text, begin, i + 1)
            begin = i + 1
        i += 1
    yield from _trimmed(text, begin, end)


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        offset = start + len(piece) - len(piece.lstrip())
        yield offset, offset + len(stripped)


def _pack(sentences: list[tuple[int, int]], max_chars: int) -> Iterator[tuple[int, int]]:
    """Greedy: add whole sentences while the chunk (as sliced from the file) stays within max_chars."""
    if not sentences:
        return
    chunk_start, chunk_end = sentences[0]
    for start, end in sentences[1:]:
        if end - chunk_start > max_chars:
            yield chunk_start, chunk_end
            chunk_start = start
        chunk_end = end
    yield chunk_start, chunk_end
