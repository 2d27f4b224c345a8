"""The Files and Batch API of the loopback server (medtune.testing.openai_server): state and JSON bodies.

Enough of OpenAI's `/v1/files` and `/v1/batches` for the official client: upload (multipart), retrieve, content;
create, retrieve and list batches. A batch's lines are answered by the server's own chat-completion logic (the same
responder, fault hooks and call log as live requests), when a client retrieves it, so a test decides when that
happens:
- `hold_batches()` keeps every batch `in_progress` until `release_batches()` (a client killed mid-wait);
- `expire_next_batch(after=n)` answers the next batch's first n lines, then expires it: the rest go to the error
  file with code `batch_expired`, as OpenAI does when the 24-hour window closes;
- `refuse_next_batch(message)` fails the next batch at validation (status `failed`, the message in its `errors`),
  as OpenAI does when the enqueued-token limit is reached;
- a line whose completion is an HTTP error (a `Fault`, e.g. context length) goes to the error file with its status
  and error body: a failed line.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import count
from typing import Any

# one chat completion for a batch line: (HTTP status, JSON body, or raw bytes for a malformed reply)
LineAnswer = Callable[[str, dict[str, Any]], tuple[int, "dict[str, Any] | bytes"]]

EXPIRED_ERROR = {
    "code": "batch_expired",
    "message": "This request could not be executed before the completion window expired.",
}


class NotFound(KeyError):
    """An unknown file or batch id: the route answers 404."""


class BatchStore:
    """Uploaded files and created batches, thread-safe; ids are sequential so tests read them easily."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = count(1)
        self._files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._released = threading.Event()
        self._released.set()
        self._expiring: deque[int] = deque()
        self._refusing: deque[str] = deque()

    # -- scripting and inspection ------------------------------------------------------------------
    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def expire_next(self, after: int) -> None:
        with self._lock:
            self._expiring.append(after)

    def refuse_next(self, message: str) -> None:
        with self._lock:
            self._refusing.append(message)

    @property
    def batches(self) -> list[dict[str, Any]]:
        """Every batch created, in creation order (copies)."""
        with self._lock:
            return [dict(batch) for batch in self._batches.values()]

    @property
    def uploads(self) -> list[dict[str, Any]]:
        """Every file the clients uploaded (purpose `batch`), not the output and error files."""
        with self._lock:
            return [dict(meta) for meta, _ in self._files.values() if meta["purpose"] == "batch"]

    def file_text(self, file_id: str) -> str:
        return self.content(file_id).decode("utf-8")

    # -- files -------------------------------------------------------------------------------------
    def upload(self, content_type: str, data: bytes) -> dict[str, Any]:
        """POST /v1/files: a multipart form with `purpose` and `file`."""
        form = _multipart(content_type, data)
        filename, payload = form["file"]
        return self._store(filename, form["purpose"][1].decode(), payload)

    def _store(self, filename: str, purpose: str, payload: bytes) -> dict[str, Any]:
        with self._lock:
            file_id = f"file-{next(self._ids):04d}"
            meta = {
                "id": file_id,
                "object": "file",
                "bytes": len(payload),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
            }
            self._files[file_id] = (meta, payload)
        return meta

    def file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            if file_id not in self._files:
                raise NotFound(file_id)
            return dict(self._files[file_id][0])

    def content(self, file_id: str) -> bytes:
        with self._lock:
            if file_id not in self._files:
                raise NotFound(file_id)
            return self._files[file_id][1]

    # -- batches -----------------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/batches: validating until the first retrieve."""
        self.file(body["input_file_id"])
        with self._lock:
            batch_id = f"batch_{next(self._ids):04d}"
            lines = self._files[body["input_file_id"]][1].decode("utf-8").splitlines()
            batch = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body["endpoint"],
                "input_file_id": body["input_file_id"],
                "completion_window": body["completion_window"],
                "status": "validating",
                "created_at": int(time.time()),
                "metadata": body.get("metadata"),
                "output_file_id": None,
                "error_file_id": None,
                "request_counts": {"total": len([line for line in lines if line.strip()]), "completed": 0, "failed": 0},
                "_expire_after": self._expiring.popleft() if self._expiring else None,
                "_refusal": self._refusing.popleft() if self._refusing else None,
            }
            self._batches[batch_id] = batch
            return _public(batch)

    def list(self) -> dict[str, Any]:
        """GET /v1/batches: newest first, one page."""
        with self._lock:
            data = [_public(b) for b in reversed(self._batches.values())]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False}

    def retrieve(self, batch_id: str, answer: LineAnswer) -> dict[str, Any]:
        """GET /v1/batches/{id}: answers the lines on the first retrieve after release (one thread at a time)."""
        with self._lock:
            if batch_id not in self._batches:
                raise NotFound(batch_id)
            batch = self._batches[batch_id]
            if batch["status"] == "validating" and batch["_refusal"]:  # fails validation: no line is answered
                error = {"code": "token_limit_exceeded", "line": None, "message": batch["_refusal"], "param": None}
                batch |= {
                    "status": "failed",
                    "failed_at": int(time.time()),
                    "errors": {"object": "list", "data": [error]},
                }
            if batch["status"] == "validating":
                batch["status"] = "in_progress"
            run_now = batch["status"] == "in_progress" and self._released.is_set()
            if run_now:
                batch["status"] = "finalizing"  # claimed: a concurrent retrieve sees it running
        if run_now:
            self._run(batch, answer)
        with self._lock:
            return _public(batch)

    def _run(self, batch: dict[str, Any], answer: LineAnswer) -> None:
        lines = [json.loads(line) for line in self.file_text(batch["input_file_id"]).splitlines() if line.strip()]
        outputs: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        expire_after = batch["_expire_after"]
        for number, line in enumerate(lines):
            if expire_after is not None and number >= expire_after:
                errors.append(_line(batch["id"], number, line["custom_id"], None, EXPIRED_ERROR))
                continue
            status, payload = answer(f"/v1/batches/{batch['id']}", line["body"])
            if isinstance(payload, bytes):  # a malformed HTTP reply: the batch worker reports a server error
                status, payload = 500, {"error": {"message": "malformed upstream reply", "type": "server_error"}}
            response = {"status_code": status, "request_id": f"req_{batch['id']}_{number}", "body": payload}
            (outputs if status == 200 else errors).append(_line(batch["id"], number, line["custom_id"], response, None))
        output = self._store(f"{batch['id']}_output.jsonl", "batch_output", _jsonl(outputs)) if outputs else None
        error = self._store(f"{batch['id']}_error.jsonl", "batch_output", _jsonl(errors)) if errors else None
        with self._lock:
            batch["output_file_id"] = output["id"] if output else None
            batch["error_file_id"] = error["id"] if error else None
            failed = sum(1 for e in errors if e["error"] is None)
            batch["request_counts"] |= {"completed": len(outputs), "failed": failed}
            batch["status"] = "expired" if expire_after is not None and expire_after < len(lines) else "completed"
            batch[f"{batch['status']}_at"] = int(time.time())


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in batch.items() if not key.startswith("_")} | {
        "request_counts": dict(batch["request_counts"])
    }


def _line(batch_id: str, number: int, custom_id: str, response: Any, error: Any) -> dict[str, Any]:
    return {"id": f"batch_req_{batch_id}_{number}", "custom_id": custom_id, "response": response, "error": error}


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _multipart(content_type: str, data: bytes) -> dict[str, tuple[str, bytes]]:
    """Form field name → (filename, bytes), parsed with the standard library's MIME parser (cgi is deprecated)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + data
    )
    form: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        form[str(name)] = (part.get_filename() or "", payload if isinstance(payload, bytes) else b"")
    return form
