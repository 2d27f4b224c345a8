"""A run dir's run_status.json (running | finished | failed + error) and the atomic writes behind it.

train.py, evaluate.py and generate_data.py all keep one, so a crash never looks finished: the report and
`MultirunFailures` read it. Kept free of heavy imports (the report uses it without loading torch).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATUS_FILE = "run_status.json"


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the file, then rename: a reader (or a crash) never sees half a file."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


def write_status(run_dir: Path, status: str, error: str | None = None) -> None:
    write_json(run_dir / STATUS_FILE, {"status": status} | ({"error": error} if error else {}))


@contextmanager
def run_status(run_dir: Path) -> Iterator[None]:
    """running while the block runs, then finished, or failed with the error's one-line description."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_status(run_dir, "running")
    try:
        yield
    except BaseException as err:
        write_status(run_dir, "failed", f"{type(err).__name__}: {err}")
        raise
    write_status(run_dir, "finished")
