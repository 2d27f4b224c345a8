"""generate_data.py as a user runs it: a subprocess against the local OpenAI-compatible server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medtune.config import DatasetConfig
from medtune.datagen.pipeline import run
from medtune.lineage import training_dataset
from medtune.run_dir import API_BATCHES_FILE
from medtune.testing import Fault, OpenAIServer
from medtune.testing.qa_pairs import qa_responder, synthetic_corpus

from helpers import kill_script_when, run_script, small_generate, train_job
from wandb_records import offline_runs

CHUNKS = 20  # 60 lines, 3 per chunk


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(synthetic_corpus(60), encoding="utf-8")
    return path


def _overrides(server: OpenAIServer, corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        *small_generate(corpus, server.base_url),
        "generator.timeout_s=1",
        f"output_dir={out}",
        f"hydra.run.dir={out.parent / (out.name + '-hydra')}",
        *extra,
    ]


def _generate_in_process(compose_config, server: OpenAIServer, corpus: Path, out: Path, *extra: str) -> dict:
    """generate_data.py's run with the same overrides, through the same pipeline.run, without a process start."""
    overrides = [*small_generate(corpus, server.base_url), "generator.timeout_s=1", f"output_dir={out}", *extra]
    return run(compose_config("generate_data", *overrides), out)


def _ok_keys(out: Path) -> set[str]:
    lines = (out / "raw_responses.jsonl").read_text(encoding="utf-8").split("\n")
    return {json.loads(line)["key"] for line in lines if line.strip().endswith("}") and '"status": "ok"' in line}


def test_cli_run_with_faults_then_reparse_is_byte_identical_tracked_and_trains(
    corpus: Path, tmp_path: Path, tiny_models: dict, compose_config
) -> None:
    """The script's run against a faulty server; the reparse and the training on its records run in-process through
    the same pipeline.run and train job the scripts call (their exits: the other tests here and test_train_cli)."""
    out = tmp_path / "out"
    with OpenAIServer(qa_responder) as server:
        server.fail_next(
            Fault.rate_limit(retry_after=0.1), Fault.server_error(), Fault.hang(30), Fault.malformed(), Fault.truncate()
        )
        proc = run_script("generate_data.py", *_overrides(server, corpus, out), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        requests, generated = server.request_count, (out / "records.jsonl").read_bytes()
        _generate_in_process(compose_config, server, corpus, out, "reparse=true")
        assert server.request_count == requests == CHUNKS + 4  # 4 retried faults; reparse made no call
    assert (out / "records.jsonl").read_bytes() == generated  # the reparse rebuilt the same records
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    records = (out / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert manifest["funnel"]["kept"] == len(records) > 0
    assert manifest["records"]["sha256"] and "truncated" in manifest["rejected_by_reason"]
    assert all(set(json.loads(r)) >= {"instruction", "output"} for r in records)
    assert "心房細動" in records[0]  # ensure_ascii=False: Japanese is stored as text
    logged = [artifact for run in offline_runs(out) for artifact in run.logged("dataset")]  # offline W&B runs
    assert logged and logged[-1].name == manifest["wandb_artifact"]
    # train.py on these records uses this very artifact version (same name, same digest): the lineage edge.
    used = training_dataset(DatasetConfig(source="jsonl", path=str(out / "records.jsonl")), "sft")
    assert (used.name, used.manifest.digest()) == (logged[-1].name, logged[-1].digest)
    dataset = ["dataset=jsonl", f"dataset.path={out / 'records.jsonl'}"]
    trained = train_job(
        compose_config("train", *dataset, "trainer.max_steps=3", "eval.at_end=false", "wandb.mode=offline"),
        tmp_path / "train",
    )
    assert trained is not None and trained["train/global_step"] == 3  # the generated records train


def test_kill9_halfway_then_resume_gives_exactly_the_uninterrupted_records(
    corpus: Path, tmp_path: Path, compose_config
) -> None:
    with OpenAIServer(qa_responder, latency_s=0.1) as server:
        whole, resumed = tmp_path / "whole", tmp_path / "resumed"
        common = ("generator.concurrency=2", "wandb.mode=disabled")
        _generate_in_process(compose_config, server, corpus, whole, *common)  # the uninterrupted run: one start less
        log = resumed / "raw_responses.jsonl"
        kill_script_when(
            "generate_data.py",
            *_overrides(server, corpus, resumed, *common),
            cwd=tmp_path,
            ready=lambda: log.exists() and len(_ok_keys(resumed)) >= 6,
            timeout=60,
        )
        paid = _ok_keys(resumed)
        assert 6 <= len(paid) < CHUNKS and not (resumed / "records.jsonl").exists()
        before = server.request_count
        proc = run_script("generate_data.py", *_overrides(server, corpus, resumed, *common), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        asked_again = {c.body["messages"][0]["content"] for c in server.calls[before:]}
    resumed_records = (resumed / "records.jsonl").read_bytes()
    assert resumed_records == (whole / "records.jsonl").read_bytes()
    ids = [json.loads(line)["id"] for line in resumed_records.decode().splitlines()]
    assert len(ids) == len(set(ids))
    chunk_rows = [json.loads(line) for line in (resumed / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    paid_prompts = {row["text"] for row in chunk_rows if row["key"] in paid}
    assert not any(text in prompt for prompt in asked_again for text in paid_prompts)  # nothing paid twice


def test_batch_killed_after_creation_reattaches_to_the_one_batch_and_gives_the_live_records(
    corpus: Path, tmp_path: Path, compose_config
) -> None:
    """The Bar of issue 24 item 4: SIGKILL while the batch is in progress, rerun, one batch in total."""
    with OpenAIServer(qa_responder) as server:
        live, batched = tmp_path / "live", tmp_path / "batched"
        small = (*small_generate(corpus, server.base_url), "wandb.mode=disabled")
        run(compose_config("generate_data", *small, f"output_dir={live}"), live)  # in-process: one start less
        live_calls = server.request_count
        server.hold_batches()  # in_progress until released: the script waits, polling
        jobs = batched / API_BATCHES_FILE
        batch = ("generator.batch=true", "generator.batch_poll_s=0.05", "wandb.mode=disabled")
        overrides = _overrides(server, corpus, batched, *batch)
        kill_script_when(
            "generate_data.py",
            *overrides,
            cwd=tmp_path,
            ready=lambda: jobs.exists() and '"batch_id": "batch_' in jobs.read_text(encoding="utf-8"),
            timeout=60,
        )
        assert len(server.batches) == 1 and server.request_count == live_calls  # created, no line answered yet
        server.release_batches()
        proc = run_script("generate_data.py", *overrides, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert len(server.batches) == 1 and len(server.batch_store.uploads) == 1  # reattached: no second upload
        assert server.request_count - live_calls == CHUNKS  # every line answered once
    assert (batched / "records.jsonl").read_bytes() == (live / "records.jsonl").read_bytes()
    batch_id = server.batches[0]["id"]
    assert f"reattaching to batch {batch_id} from an earlier run" in proc.stderr and " created for " not in proc.stderr
    assert f"batch {batch_id} completed: {CHUNKS} answered, 0 failed" in proc.stderr


def test_exhausted_quota_exits_2_with_one_clear_line(corpus: Path, tmp_path: Path) -> None:
    env_key = "MEDTUNE_TEST_KEY"
    os.environ[env_key] = "sk-do-not-print-me"
    try:
        with OpenAIServer(qa_responder) as server:
            server.fail_next(Fault.quota())
            proc = run_script(
                "generate_data.py",
                *_overrides(
                    server, corpus, tmp_path / "out", f"generator.api_key_env={env_key}", "wandb.mode=disabled"
                ),
                cwd=tmp_path,
            )
    finally:
        del os.environ[env_key]
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("medtune: error:")]
    assert len(errors) == 1 and "the account behind $MEDTUNE_TEST_KEY has no quota left" in errors[0]
    assert "Traceback" not in proc.stderr and "sk-do-not-print-me" not in proc.stderr + proc.stdout


def test_multirun_records_a_failed_job_and_goes_on(corpus: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    unknown = lambda request, attempt: Fault.unknown_model() if request["model"] != "test-model" else None  # noqa: E731
    with OpenAIServer(qa_responder, fault_for=unknown) as server:
        proc = run_script(
            "generate_data.py", "-m", f"source.paths=[{corpus}]", "chunking.lines_per_chunk=3", "generator=local",
            "generator.model=test-model,no-such-model", f"generator.base_url={server.base_url}",
            "decontamination.eval_sets=[]", "progress=false", "wandb.mode=disabled", f"hydra.sweep.dir={sweep}",
            cwd=tmp_path,
        )  # fmt: skip
    assert proc.returncode == 1 and "1 cell(s) did not finish" in proc.stderr and "Traceback" not in proc.stderr
    assert "does not serve model 'no-such-model'" in proc.stderr and "it serves: medtune-test" in proc.stderr
    statuses = sorted(json.loads(path.read_text())["status"] for path in sweep.rglob("run_status.json"))
    assert statuses == ["failed", "finished"] and len(list(sweep.rglob("records.jsonl"))) == 2
