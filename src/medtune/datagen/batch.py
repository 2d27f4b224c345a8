"""generator.batch=true: the chunks' requests as OpenAI Batch API jobs (half price, answered within 24 hours).

Each job goes upload → create → poll → download, and its ids are written to the run dir (run_dir.API_BATCHES_FILE)
after each step, so a killed run's rerun reattaches to its batch instead of uploading and paying again; a kill between
creating a batch and writing its id is covered too: the rerun finds the batch by its input file among the account's
batches. Every output and error line becomes one entry of the raw request log in the format live requests write
(medtune.api_client), so parsing, dedup, rejects, resume and reparse do not know which way a reply came.

What the rerun of a run sends:
- answered requests (by a batch or live): nothing, as for live requests;
- failed lines (an HTTP error inside the batch): logged with their error text and counted as failed; this run does
  not send them again, the next run does (as a live request that failed after its retries);
- lines a batch did not reach before its 24-hour window closed (`expired`, code `batch_expired`): sent again at once
  as a new batch, not live: the user chose batch to halve the price, and a new window is what OpenAI's docs advise.
  A batch that expires with no line done stops the run instead (it would only expire again; `generator.batch=false`
  sends the rest live, resuming from the same raw log).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import openai
from openai.types import Batch
from openai.types.chat import ChatCompletion
from tqdm import tqdm

from medtune.api_client import (
    ApiConfig,
    ApiStopped,
    Failure,
    MalformedReply,
    Request,
    RequestLog,
    Summary,
    address,
    api_key,
    backoff_seconds,
    classify,
    error_entry,
    ok_entry,
)
from medtune.errors import DataError
from medtune.run_dir import API_BATCHES_FILE, write_json

ENDPOINT: Final = "/v1/chat/completions"
COMPLETION_WINDOW: Final = "24h"  # the only window the Batch API offers
MAX_REQUESTS = 50_000  # the Batch API's limits per input file; a longer plan is split into several batches
MAX_BYTES = 200 * 2**20
TERMINAL = frozenset({"completed", "expired", "failed", "cancelled"})
EXPIRED_CODE = "batch_expired"  # an error-file line the window closed on: sent again, not a failure
BATCH_KEY = "batch"  # raw-log field naming the batch that answered an entry (its cost is the batch price)

T = TypeVar("T")


@dataclass
class Job:
    """One batch as the run dir keeps it; ids are filled in as each step succeeds."""

    requests: int
    input_file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None  # the last status seen
    collected: bool = False  # its output and error lines are in the raw log


class Jobs:
    """The run dir's api_batches.json: every job of this output_dir, written after each step (write-then-rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.jobs = self._load()

    def _load(self) -> list[Job]:
        if not self.path.exists():
            return []
        try:
            return [Job(**row) for row in json.loads(self.path.read_text(encoding="utf-8"))["jobs"]]
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"not a batch job list ({err}); move it away to submit anew", path=self.path) from err

    def save(self) -> None:
        write_json(self.path, {"jobs": [asdict(job) for job in self.jobs if job.input_file_id]})

    def open(self) -> list[Job]:
        """Jobs whose lines are not yet logged; a job whose upload failed has nothing on the server to wait for."""
        return [job for job in self.jobs if job.input_file_id and not job.collected]


def batch_jobs(out: Path) -> list[dict[str, Any]]:
    """The run dir's batch jobs (ids, last status) for the manifest; empty for a run without batches."""
    return [asdict(job) for job in Jobs(out / API_BATCHES_FILE).jobs]


def input_files(requests: Sequence[Request]) -> list[bytes]:
    """Batch input JSONL (custom_id = the request key, body = the live request's body), split at the API's limits."""
    files: list[bytes] = []
    lines: list[bytes] = []
    size = 0
    for request in requests:
        line = {"custom_id": request.key, "method": "POST", "url": ENDPOINT, "body": request.body}
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        if lines and (len(lines) == MAX_REQUESTS or size + len(data) > MAX_BYTES):
            files.append(b"".join(lines))
            lines, size = [], 0
        lines.append(data)
        size += len(data)
    return [*files, b"".join(lines)] if lines else files


def generate_batch(
    cfg: ApiConfig,
    poll_s: float,
    requests: Sequence[Request],
    log: RequestLog,
    out: Path,
    *,
    label: str = "requests",
    progress: bool = True,
    on_entry: Callable[[dict[str, Any]], None] | None = None,
) -> Summary:
    """Send every request without a logged reply as batch jobs, wait for them, and log their lines; a `Summary`
    as call_all returns (done and failed in this run, resumed from earlier ones)."""
    unique = list({r.key: r for r in requests}.values())
    summary = Summary(resumed=sum(r.key in log.answered() for r in unique))
    started = time.perf_counter()
    session = _Session(cfg, poll_s, log, Jobs(out / API_BATCHES_FILE), summary, progress, on_entry)
    try:
        session.run(unique)
    finally:
        summary.seconds = time.perf_counter() - started
        print(summary.line(label), file=sys.stderr)
    return summary


class _Session:
    """One run's client, job list and counts."""

    def __init__(
        self,
        cfg: ApiConfig,
        poll_s: float,
        log: RequestLog,
        jobs: Jobs,
        summary: Summary,
        progress: bool,
        on_entry: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.cfg, self.poll_s, self.log, self.jobs, self.summary = cfg, poll_s, log, jobs, summary
        self.progress, self.on_entry = progress, on_entry or (lambda entry: None)
        self.secret = api_key(cfg)
        self.client = openai.OpenAI(api_key=self.secret, base_url=cfg.base_url, max_retries=0, timeout=cfg.timeout_s)
        self.settled: set[str] = set()  # keys that failed in this run: the next run asks them again

    def run(self, unique: list[Request]) -> None:
        """Collect open jobs (a killed run's too), then submit what is unanswered, until nothing is left."""
        by_key = {r.key: r for r in unique}
        for job in self.jobs.open():
            which = job.batch_id or f"of input {job.input_file_id}"
            _say(f"reattaching to batch {which} from an earlier run ({job.requests} requests)")
        with self.client:
            while True:
                for job in self.jobs.open():
                    self._finish(job, by_key)
                answered = self.log.answered()
                pending = [r for r in unique if r.key not in answered and r.key not in self.settled]
                if not pending:
                    return
                self._submit(pending)

    # -- submit ------------------------------------------------------------------------------------
    def _submit(self, pending: list[Request]) -> None:
        for data in input_files(pending):
            job = Job(requests=data.count(b"\n"))
            self.jobs.jobs.append(job)
            self._upload(job, data)
            self._create(job)

    def _upload(self, job: Job, data: bytes) -> None:
        name = f"medtune-{self.log.path.parent.name}.jsonl"
        uploaded = self._call("uploading the batch input", lambda: self.client.files.create(
            file=(name, data, "application/jsonl"), purpose="batch"
        ))  # fmt: skip
        job.input_file_id = uploaded.id
        self.jobs.save()

    def _create(self, job: Job) -> None:
        assert job.input_file_id is not None
        input_file_id = job.input_file_id
        batch = self._call("creating the batch", lambda: self.client.batches.create(
            input_file_id=input_file_id, endpoint=ENDPOINT, completion_window=COMPLETION_WINDOW,
            metadata={"medtune_run_dir": str(self.log.path.parent)[-512:]},
        ))  # fmt: skip
        job.batch_id, job.status = batch.id, batch.status
        self.jobs.save()
        _say(f"batch {batch.id} created for {job.requests} requests; checking every {self.poll_s:g} s (a rerun of "
             "this command reattaches to it)")  # fmt: skip

    def _find(self, job: Job) -> None:
        """A kill between create and save: the batch of our input file, if the server has one, else create it."""
        found = self._call("listing batches", lambda: next(
            (b for b in self.client.batches.list(limit=100) if b.input_file_id == job.input_file_id), None
        ))  # fmt: skip
        if found is None:
            self._create(job)
            return
        job.batch_id, job.status = found.id, found.status
        self.jobs.save()

    # -- wait and collect --------------------------------------------------------------------------
    def _finish(self, job: Job, by_key: dict[str, Request]) -> None:
        if job.batch_id is None:
            self._find(job)
        batch = self._wait(job)
        done, failed, expired = self._collect(batch, by_key)
        job.status, job.collected = batch.status, True
        self.jobs.save()
        resent = " (sent again as a new batch)" if expired and (done or failed) else ""
        _say(f"batch {batch.id} {batch.status}: {done} answered, {failed} failed, {expired} not reached{resent}")
        if batch.status == "failed":
            data = (batch.errors.data if batch.errors else None) or []
            errors = "; ".join(("" if e.line is None else f"line {e.line}: ") + f"{e.message}" for e in data)
            raise ApiStopped(f"{address(self.cfg)} refused batch {batch.id} ({errors or 'no reason given'})")
        if batch.status == "cancelled":
            raise ApiStopped(f"batch {batch.id} was cancelled; its answers are kept, a rerun submits the rest")
        if expired and not done and not failed:
            raise ApiStopped(
                f"batch {batch.id} expired before any of its {expired} requests was answered; rerun to submit them "
                "again, or set generator.batch=false to send them live (the raw log is shared)"
            )

    def _wait(self, job: Job) -> Batch:
        """Poll until the batch ends, with a bar of lines done and a line per status change (without the bar,
        progress=false as in a job's log, also one per tenth of the lines done)."""
        assert job.batch_id is not None
        batch_id = job.batch_id
        bar = tqdm(total=job.requests, desc=f"batch {batch_id}", unit="request", disable=not self.progress,
                   dynamic_ncols=True, file=sys.stderr)  # fmt: skip
        said = (job.status, 0)
        try:
            while True:
                batch = self._call("checking the batch", lambda: self.client.batches.retrieve(batch_id))
                counts = batch.request_counts
                done, failed = (counts.completed, counts.failed) if counts else (0, 0)
                bar.n = done + failed
                bar.set_postfix_str(f"{batch.status} failed={failed}")
                if batch.status in TERMINAL:
                    return batch
                now = (batch.status, 0 if self.progress else (done + failed) * 10 // max(job.requests, 1))
                if now != said:
                    said = now
                    _say(f"batch {batch_id}: {batch.status} ({done}/{job.requests} done, {failed} failed)", bar)
                time.sleep(self.poll_s)
        finally:
            bar.close()

    def _collect(self, batch: Batch, by_key: dict[str, Request]) -> tuple[int, int, int]:
        """Output and error lines into the raw log (a line already logged by a killed collect is skipped)."""
        logged = {e["key"] for e in self.log.entries if e.get(BATCH_KEY) == batch.id}
        done = failed = expired = 0
        for file_id in (batch.output_file_id, batch.error_file_id):
            for line in self._lines(file_id):
                key = line["custom_id"]
                if _error_code(line) == EXPIRED_CODE:
                    expired += 1
                    continue
                if key in logged:
                    continue
                request = by_key.get(key) or Request(key, key, {})  # a line of an earlier plan: kept, paid for
                entry = _entry(request, line) | {BATCH_KEY: batch.id}
                self.log.append(entry)
                self.on_entry(entry)
                if entry["status"] == "ok":
                    done += 1
                else:
                    failed += 1
                    self.settled.add(key)
        self.summary.done += done
        self.summary.failed += failed
        return done, failed, expired

    def _lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if file_id is None:
            return []
        text = self._call("downloading batch results", lambda: self.client.files.content(file_id).text)
        return [json.loads(line) for line in text.split("\n") if line.strip()]

    # -- one API call ------------------------------------------------------------------------------
    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Retried as live requests are (5xx, 429, timeouts, refused connections); anything else stops the run."""
        retry = self.cfg.retry
        for attempt in range(1, retry.max_attempts + 1):
            try:
                return call()
            except openai.OpenAIError as err:
                failure = classify(err, self.secret)
            if failure.kind not in ("retry", "connect") or attempt == retry.max_attempts:
                raise ApiStopped(self._stop_message(what, failure))
            time.sleep(backoff_seconds(failure, attempt, retry))
        raise AssertionError("unreachable: the last attempt raises")

    def _stop_message(self, what: str, failure: Failure) -> str:
        where = address(self.cfg)
        if failure.http_status == 404 and what == "uploading the batch input":
            return f"{where} has no Batch API ({failure.message}); set generator.batch=false to send live requests"
        if failure.http_status in (401, 403):
            return f"{where} refused the key in ${self.cfg.api_key_env} while {what} ({failure.message})"
        return f"{what} at {where} failed ({failure.message})"


def _entry(request: Request, line: dict[str, Any]) -> dict[str, Any]:
    """A raw-log entry, as a live attempt with the same reply or error would have written it."""
    response = line.get("response") or {}
    if response.get("status_code") == 200:
        try:
            return ok_entry(request, 1, ChatCompletion.model_validate(response["body"]), 0.0)
        except (MalformedReply, ValueError) as err:  # ValueError: pydantic's ValidationError
            return error_entry(request, 1, Failure("retry", f"{type(err).__name__}: {err}", 200), "gave_up", 0.0)
    status = response.get("status_code")
    error = (response.get("body") or {}).get("error") or line.get("error") or {}
    message = f"{error.get('code') or error.get('type') or 'error'}: {error.get('message', 'no message')}"
    refused = status is not None and 400 <= status < 500 and status not in (408, 409, 429)  # as classify() decides
    failure = Failure("refused" if refused else "retry", f"batch line: {message}", status)
    return error_entry(request, 1, failure, "refused" if refused else "gave_up", 0.0)


def _error_code(line: dict[str, Any]) -> str | None:
    return (line.get("error") or {}).get("code")


def _say(message: str, bar: tqdm | None = None) -> None:
    """One line on stderr above the progress bar, shown also when the bar is off (progress=false, logs)."""
    (bar.write if bar is not None else tqdm.write)(message, file=sys.stderr)
