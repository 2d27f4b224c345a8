"""Read back a W&B offline run file (`run-<id>.wandb`) in tests, without network or a W&B server.

The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of
chunks (crc32c:4, length:2 little-endian, type:1, data); FULL/FIRST/MIDDLE/LAST chunks reassemble into
protobuf `Record`s from `wandb.proto.wandb_internal_pb2`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_records(path: Path):
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        room = BLOCK - (pos % BLOCK)
        if room < CHUNK_HEADER:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            pending += chunk
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        yield record


@dataclass
class OfflineRun:
    run_id: str = ""
    config: dict = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    group: str = ""
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    exit_code: int | None = None


def _key(item) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_offline_run(run_file: Path) -> OfflineRun:
    run = OfflineRun(run_id=run_file.stem.removeprefix("run-"))  # W&B names the file after the run id
    for record in iter_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            assert record.run.run_id == run.run_id
            run.group, run.tags = record.run.run_group, list(record.run.tags)
            for item in record.run.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_runs(run_dir: Path) -> list[OfflineRun]:
    """Every W&B run file under a medtune run dir (a resumed run has one per attempt)."""
    return [read_offline_run(p) for p in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))]
