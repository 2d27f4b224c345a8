"""Files of a generation run, all under its output_dir; the raw log is the source of truth.

raw_responses.jsonl  append-only, one line per API attempt (medtune.api_client.RequestLog): what was paid for
chunks.jsonl         the plan: every chunk with its request key (reparse needs no source files)
records.jsonl        the training set (`train.py dataset=jsonl dataset.path=...`), rebuilt from the two above
rejects.jsonl        every pair or fragment not kept, with its reason
manifest.json        funnel, tokens, cost, decontamination matches, versions
run_status.json      the run state (medtune.run_dir.RunState), as in every medtune run dir
api_batches.json     generator.batch=true: the Batch API jobs' ids (medtune.run_dir.API_BATCHES_FILE)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtune.errors import DataError
from medtune.run_dir import write_text

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
