"""Line-located reading of the project's text and JSONL files (records, questions, predictions).

Kept free of heavy imports so the report and the loaders can use it without loading torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medtune.errors import DataError


def nonblank_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) for every non-blank line; a missing file or bad UTF-8 is a located DataError.

    A UTF-8 byte-order mark (as Windows editors write) is accepted and dropped."""
    if path.is_dir():
        raise DataError("is a directory; a file was expected here", path=path)
    if not path.is_file():
        raise DataError("file does not exist", path=path)
    number = 0
    with path.open(encoding="utf-8-sig") as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
        except UnicodeDecodeError as err:
            raise DataError(f"not UTF-8 text ({err.reason})", path=path, line=number + 1) from err


def read_jsonl_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; malformed JSON or a non-object is a DataError at its line."""
    for number, line in nonblank_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"malformed JSON: {err.msg} at {_where(line, err.pos)}", path=path, line=number) from err
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=number)
        yield number, obj


def _where(line: str, pos: int) -> str:
    """`column N (character, 1-based), near '...'`: the excerpt shows where the parser stopped, since editors
    count columns differently for full-width Japanese characters and tabs."""
    excerpt = line[max(0, pos - 15) : pos + 15].rstrip("\n")
    return f"column {pos + 1}, near {excerpt!r}"


def read_json_array(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each element of a JSON array file, so a bad element is located by its line."""
    if not path.is_file():
        raise DataError("file does not exist", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text ({err.reason})", path=path) from err
    decoder = json.JSONDecoder()
    position = _skip_space(text, 0)
    if not text.startswith("[", position):
        raise DataError("expected a JSON array of objects", path=path, line=_line_at(text, position))
    position = _skip_space(text, position + 1)
    while not text.startswith("]", position):
        try:
            obj, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as err:
            raise DataError(f"malformed JSON ({err.msg})", path=path, line=err.lineno) from err
        if not isinstance(obj, dict):
            raise DataError(
                f"expected a JSON object, got {type(obj).__name__}", path=path, line=_line_at(text, position)
            )
        yield _line_at(text, position), obj
        position = _skip_space(text, end)
        if text.startswith(",", position):
            position = _skip_space(text, position + 1)
        elif not text.startswith("]", position):
            raise DataError("expected ',' or ']' after an array element", path=path, line=_line_at(text, position))


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1
