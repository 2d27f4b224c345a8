"""The append-only attempt log: one JSON line per attempt, what was paid for, and so what a rerun skips."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from medtune.errors import DataError


class RequestLog:
    """The append-only attempt log (one JSON line per attempt, success or not): what was paid for.

    A kill can only cut its last line: that partial line is ignored on reading and cut off before the
    first append, so the next entry never glues onto it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._complete_bytes = 0
        self.entries = self._load()
        self._handle: TextIO | None = None

    def _load(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        self._complete_bytes = data.rfind(b"\n") + 1
        entries = []
        for number, line in enumerate(data[: self._complete_bytes].decode("utf-8").split("\n"), start=1):
            if line.strip():  # not splitlines: a JSON string may hold a raw U+2028
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"malformed JSON ({err.msg})", path=self.path, line=number) from err
        return entries

    def answered(self) -> dict[str, dict[str, Any]]:
        """Request key → its first successful entry."""
        found: dict[str, dict[str, Any]] = {}
        for entry in self.entries:
            if entry["status"] == "ok":
                found.setdefault(entry["key"], entry)
        return found

    def errors(self) -> dict[str, str]:
        """Request key → the error of its last failed attempt (keys answered since are left out)."""
        answered = self.answered()
        return {e["key"]: e["error"] for e in self.entries if e["status"] != "ok" and e["key"] not in answered}

    def append(self, entry: dict[str, Any]) -> None:
        """Flushed at once: a kill -9 right after loses nothing that was paid for."""
        if self._handle is None:
            if self.path.exists():
                os.truncate(self.path, self._complete_bytes)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._handle.flush()
        self.entries.append(entry)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
