"""Files of a generation run, all under its output_dir; the raw log is the source of truth.

raw_responses.jsonl  append-only, one line per API attempt (success or error): what was paid for
chunks.jsonl         the plan: every chunk with its request key (reparse needs no source files)
records.jsonl        the training set (`train.py dataset=jsonl dataset.path=...`), rebuilt from the two above
rejects.jsonl        every pair or fragment not kept, with its reason
manifest.json        funnel, tokens, cost, decontamination matches, versions
A crash can only cut the raw log's last line; it is dropped on the next open, never mis-read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from medtune.errors import DataError

RAW_LOG = "raw_responses.jsonl"
CHUNKS = "chunks.jsonl"
RECORDS = "records.jsonl"
REJECTS = "rejects.jsonl"
MANIFEST = "manifest.json"
PLAN = "plan.json"


def json_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=False) + "\n"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write-then-rename, so a reader (or a crash) never sees half a file."""
    write_text(path, "".join(json_line(row) for row in rows))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise DataError("does not exist (is output_dir the directory of an earlier run?)", path=path)
    return read_jsonl_text(path.read_text(encoding="utf-8"), path)


def read_jsonl_text(text: str, path: Path) -> list[dict[str, Any]]:
    """Every line as an object; a malformed line stops with its location."""
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: JSON may hold raw U+2028
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DataError(f"malformed JSON ({err.msg})", path=path, line=number) from err
    return rows


class RawLog:
    """The append-only attempt log; `answered()` maps request keys to their (first) successful reply."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._complete_bytes = 0
        self.entries = self._load()
        self._handle: TextIO | None = None

    def _load(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        self._complete_bytes = data.rfind(b"\n") + 1  # a line without its newline was cut by a kill
        return read_jsonl_text(data[: self._complete_bytes].decode("utf-8"), self.path)

    def answered(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for entry in self.entries:
            if entry["status"] == "ok":
                found.setdefault(entry["key"], entry)
        return found

    def append(self, entry: dict[str, Any]) -> None:
        """One line per attempt, flushed at once: a kill -9 right after loses nothing that was paid for."""
        if self._handle is None:
            if self.path.exists():  # drop a cut last line first, or the next entry would be glued to it
                os.truncate(self.path, self._complete_bytes)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(json_line(entry))
        self._handle.flush()
        self.entries.append(entry)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
