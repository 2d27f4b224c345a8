"""Read back a W&B offline run file (`run-<id>.wandb`) in tests, without network or a W&B server.

The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of
chunks (crc32c:4, length:2 little-endian, type:1, data); FULL/FIRST/MIDDLE/LAST chunks reassemble into
protobuf `Record`s from `wandb.proto.wandb_internal_pb2`.
"""

from __future__ import annotations

import json
import struct
import time
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
    name: str = ""
    config: dict = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    group: str = ""
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    exit_code: int | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    step_metrics: dict[str, str] = field(default_factory=dict)  # metric name or glob → its define_metric x-axis

    def logged(self, kind: str) -> list[Artifact]:
        """Artifacts this run produced (`kind="dataset"`...), not those it only uses."""
        return [a for a in self.artifacts if a.type == kind and not a.used]

    def used(self, kind: str) -> list[Artifact]:
        return [a for a in self.artifacts if a.type == kind and a.used]


@dataclass
class Artifact:
    """An artifact record: logged by the run, or (used=True) consumed by it; `wandb sync` builds the graph."""

    name: str
    type: str
    digest: str
    used: bool
    metadata: dict
    entries: dict[str, str]  # path in the artifact → reference URI ("" for a file W&B stores)


def _key(item) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_offline_run(run_file: Path) -> OfflineRun:
    run = OfflineRun(run_id=run_file.stem.removeprefix("run-"))  # W&B names the file after the run id
    for record in iter_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            assert record.run.run_id == run.run_id
            run.group, run.tags, run.name = record.run.run_group, list(record.run.tags), record.run.display_name
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
        elif kind == "artifact":
            art = record.artifact
            run.artifacts.append(
                Artifact(
                    name=art.name,
                    type=art.type,
                    digest=art.digest,
                    used=art.use_after_commit,
                    metadata=json.loads(art.metadata) if art.metadata else {},
                    entries={entry.path: entry.ref for entry in art.manifest.contents},
                )
            )
        elif kind == "metric":
            name = record.metric.name or record.metric.glob_name
            run.step_metrics[name] = record.metric.step_metric
    return run


def finished_offline_runs(run_dir: Path, timeout: float = 30.0) -> list[OfflineRun]:
    """`offline_runs` once every run file holds its exit record: W&B's service process may still be writing the
    file when `finish()` has returned in a busy process (seen once: a summary key missing under heavy load)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = offline_runs(run_dir)
        if (runs and all(run.exit_code is not None for run in runs)) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def offline_runs(run_dir: Path) -> list[OfflineRun]:
    """Every W&B run file under a medtune run dir (a resumed run has one per attempt)."""
    return [read_offline_run(p) for p in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))]
