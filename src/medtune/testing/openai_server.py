"""A small OpenAI-compatible chat-completions server for offline tests and benchmarks.

It speaks just enough of the OpenAI HTTP API for the official `openai` client (sync or async):
`POST /v1/chat/completions` (non-streaming), `GET /v1/models`, and the Files and Batch API
(`/v1/files`, `/v1/batches`: medtune.testing.openai_batches; `batch_api=False` answers them 404). It runs
on 127.0.0.1 at a free port in a background thread, so tests exercise the real client, real HTTP and real
retries.

    from openai import AsyncOpenAI
    from medtune.testing import Fault, OpenAIServer

    def answer(request: dict) -> str:                 # request: the parsed POST body
        question = request["messages"][-1]["content"]
        return "3" if "心房細動" in question else "1"

    with OpenAIServer(answer, latency_s=0.2) as server:   # 200 ms per call (benchmarks)
        server.fail_next(Fault.rate_limit(retry_after=0.05), Fault.server_error())
        client = AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        ...                                           # the first two calls get 429 then 500
        assert server.request_count == n_questions + 2
        assert [c.fault for c in server.calls][:2] == ["rate_limit", "server_error"]

How a request is answered; the first hook that yields a fault wins:
1. `fault_for(request, attempt) -> Fault | None` (constructor argument, optional). `attempt` counts the
   earlier requests with the same body (0 for the first), so "fail the first try of question 3 with a
   429" is `lambda req, attempt: Fault.rate_limit() if attempt == 0 and "Q3" in str(req) else None`.
2. The queue filled by `fail_next(*faults)`: the next requests, in arrival order, get these faults.
3. `responder(request) -> str | Fault`: the assistant's reply text, or a fault for this request.

Faults (see `Fault`): 429 with or without Retry-After, 429 `insufficient_quota`, 500, 401, 403, 404
unknown model, 400 context length exceeded, a reply that hangs past the client's timeout, a malformed
(non-JSON) 200 body, a 200 with an empty `choices` list, a connection closed mid-reply (after the headers,
or before any byte), and a truncated reply (`finish_reason: "length"`, the responder's text cut short).
The reply's token limit may come as `max_completion_tokens` or `max_tokens` (`Call.token_limit_param` says
which); `token_limit_params=("max_completion_tokens",)` refuses the other as OpenAI's reasoning models do.
`unused_base_url()` is an address where nothing listens. Every reply carries a `usage` block; its "tokens"
are characters (no tokenizer offline). `calls` is a thread-safe log of every request, batch lines included
(their path is `/v1/batches/<id>`).

A batch's lines go through the same logic as live requests when a client first retrieves the batch;
`hold_batches()` / `release_batches()` keep it `in_progress` meanwhile, `expire_next_batch(after=n)`
expires the next one after n lines, `refuse_next_batch()` fails the next one at validation, and a line the
responder or a hook answers with a Fault is a failed line.
"""

from __future__ import annotations

import functools
import hashlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from medtune.testing.openai_batches import BatchStore, NotFound

Responder = Callable[[dict[str, Any]], "str | Fault"]
FaultHook = Callable[[dict[str, Any], int], "Fault | None"]


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour; build it with the class methods."""

    kind: str
    status: int = 200
    retry_after: float | None = None  # seconds, sent as the Retry-After header (429 only)
    seconds: float = 0.0  # hang: how long the reply is withheld
    keep_fraction: float = 0.5  # truncate: share of the responder's text that is sent

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1.0) -> Fault:
        """429 rate_limit_exceeded: a client should wait Retry-After seconds and try again."""
        return cls("rate_limit", 429, retry_after=retry_after)

    @classmethod
    def quota(cls) -> Fault:
        """429 insufficient_quota: retrying cannot help, a client should stop."""
        return cls("quota", 429)

    @classmethod
    def server_error(cls) -> Fault:
        return cls("server_error", 500)

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls("unauthorized", 401)

    @classmethod
    def forbidden(cls) -> Fault:
        return cls("forbidden", 403)

    @classmethod
    def unknown_model(cls) -> Fault:
        """404 model_not_found, as the API answers a model it does not serve."""
        return cls("unknown_model", 404)

    @classmethod
    def context_length(cls) -> Fault:
        """400 context_length_exceeded: this request can never succeed, others can."""
        return cls("context_length", 400)

    @classmethod
    def empty_choices(cls) -> Fault:
        """HTTP 200 with a well-formed body whose `choices` list is empty."""
        return cls("empty_choices")

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Fault:
        """Withhold the reply (then send a normal one) so a client with a shorter timeout gives up."""
        return cls("hang", seconds=seconds)

    @classmethod
    def drop(cls, after_headers: bool = True) -> Fault:
        """Close the connection mid-reply: after the status line, the headers and half the body (a proxy or
        server dying under load), or with `after_headers=False` before sending anything."""
        return cls("drop" if after_headers else "drop_silent")

    @classmethod
    def malformed(cls) -> Fault:
        """HTTP 200 whose body is cut-off JSON."""
        return cls("malformed")

    @classmethod
    def truncate(cls, keep_fraction: float = 0.5) -> Fault:
        """The responder's text cut to `keep_fraction` of its characters, finish_reason "length"."""
        return cls("truncate", keep_fraction=keep_fraction)


_ERROR_BODIES = {
    "rate_limit": ("Rate limit reached for requests. Please try again shortly.", "requests", "rate_limit_exceeded"),
    "quota": (
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        "insufficient_quota",
    ),
    "server_error": ("The server had an error while processing your request.", "server_error", None),
    "unauthorized": ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    "forbidden": ("You are not allowed to use this model.", "invalid_request_error", "model_not_allowed"),
    "unknown_model": (
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    "context_length": (
        "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
        "invalid_request_error",
        "context_length_exceeded",
    ),
}


TOKEN_LIMIT_PARAMS = ("max_completion_tokens", "max_tokens")


def unused_base_url() -> str:
    """An OpenAI-style base URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@dataclass(frozen=True)
class Call:
    """One request as the server saw it."""

    path: str
    body: dict[str, Any]
    attempt: int  # earlier requests with the same body
    fault: str | None  # the Fault.kind served, None for a normal reply
    api_key: str | None  # the bearer token the client sent
    started: float  # time.monotonic() at arrival

    @property
    def token_limit_param(self) -> str | None:
        """Which name the request gave its reply's token limit (the server accepts both unless told otherwise)."""
        found = [name for name in TOKEN_LIMIT_PARAMS if name in self.body]
        return found[0] if found else None


class OpenAIServer:
    """Serve chat completions from `responder` at `base_url` while the context is open."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency_s: float = 0.0,
        fault_for: FaultHook | None = None,
        model: str = "medtune-test",
        batch_api: bool = True,
        token_limit_params: tuple[str, ...] = TOKEN_LIMIT_PARAMS,
    ) -> None:
        self.responder: Responder = responder or (lambda _request: "ok")
        self.latency_s = latency_s  # added to every chat completion (benchmarks)
        self.fault_for = fault_for
        self.model = model
        # the token-limit names accepted; another one gets the 400 OpenAI's reasoning models give max_tokens
        self.token_limit_params = token_limit_params
        self._lock = threading.Lock()
        self._queued: deque[Fault] = deque()
        self._calls: list[Call] = []
        self._attempts: dict[str, int] = {}
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.batch_api = batch_api  # False: /v1/files and /v1/batches answer 404, as on vLLM or Ollama
        self.batch_store = BatchStore()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> OpenAIServer:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _make_handler(self))
        # a short poll interval makes stop() (and so each test using the server) quick
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.02)
        self._thread = threading.Thread(target=serve, name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, and wake handlers that are hanging or sleeping so nothing lingers."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What to pass as the client's `base_url`."""
        assert self._httpd is not None, "start the server first"
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}/v1"

    # -- scripting and inspection ------------------------------------------------------------------
    def fail_next(self, *faults: Fault) -> None:
        """The next len(faults) chat requests, in arrival order, get these faults."""
        with self._lock:
            self._queued.extend(faults)

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    @property
    def request_count(self) -> int:
        """Chat-completion requests received so far, faults included."""
        with self._lock:
            return len(self._calls)

    # -- request handling (called from handler threads) --------------------------------------------
    def _register(self, path: str, body: dict[str, Any], api_key: str | None) -> tuple[int, Fault | None]:
        """Log the call and decide on a hook or queued fault, atomically, so concurrent tests are exact."""
        key = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            fault = self.fault_for(body, attempt) if self.fault_for else None
            if fault is None and self._queued:
                fault = self._queued.popleft()
            index = len(self._calls)
            self._calls.append(Call(path, body, attempt, fault.kind if fault else None, api_key, time.monotonic()))
        return index, fault

    def _record_fault(self, index: int, fault: Fault) -> None:
        with self._lock:
            call = self._calls[index]
            self._calls[index] = Call(call.path, call.body, call.attempt, fault.kind, call.api_key, call.started)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _answer(self, path: str, body: dict[str, Any], api_key: str | None) -> _Reply:
        """One chat completion (hooks, queued faults, responder) as (status, JSON or raw bytes, headers)."""
        index, fault = self._register(path, body, api_key)
        self._pause(self.latency_s)
        reply = self.responder(body) if fault is None or fault.kind == "truncate" else ""
        if isinstance(reply, Fault):  # the responder scripted a fault for this request
            fault, reply = reply, ""
            self._record_fault(index, fault)
        if fault is None:
            return 200, _completion(self, body, reply, "stop"), {}
        if fault.kind == "truncate":
            return 200, _completion(self, body, reply[: int(len(reply) * fault.keep_fraction)], "length"), {}
        if fault.kind == "hang":
            self._pause(fault.seconds)
            return 200, _completion(self, body, "", "stop"), {}
        if fault.kind in ("drop", "drop_silent"):  # the handler closes the connection mid-reply
            return DROPPED, _completion(self, body, "dropped", "stop") if fault.kind == "drop" else b"", {}
        if fault.kind == "malformed":
            return 200, b'{"id": "chatcmpl-broken", "choices": [{"message": {"content": "', {}
        if fault.kind == "empty_choices":
            return 200, _completion(self, body, "", "stop") | {"choices": []}, {}
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        return fault.status, _error_body(fault.kind), headers

    # -- the Batch API (state and line format: medtune.testing.openai_batches) ---------------------
    def _answer_line(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | bytes]:
        status, payload, _ = self._answer(path, body, None)
        return status, payload

    def hold_batches(self) -> None:
        """Keep every batch `in_progress` (no line answered) until `release_batches()`."""
        self.batch_store.hold()

    def release_batches(self) -> None:
        self.batch_store.release()

    def expire_next_batch(self, after: int) -> None:
        """The next batch created answers its first `after` lines, then expires (the rest: `batch_expired`)."""
        self.batch_store.expire_next(after)

    def refuse_next_batch(self, message: str = "Enqueued token limit reached for this model.") -> None:
        """The next batch created fails validation (status `failed`, `message` in its errors): no line answered."""
        self.batch_store.refuse_next(message)

    @property
    def batches(self) -> list[dict[str, Any]]:
        """Every batch created so far, in creation order."""
        return self.batch_store.batches


def _completion(server: OpenAIServer, body: dict[str, Any], text: str, finish_reason: str) -> dict[str, Any]:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    return {
        "id": f"chatcmpl-{hashlib.sha1(text.encode()).hexdigest()[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", server.model),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_chars,
            "completion_tokens": len(text),
            "total_tokens": prompt_chars + len(text),
        },
    }


JSON_TYPE = "application/json"
DROPPED = -1  # _answer's status for a connection the handler closes mid-reply (Fault.drop)
_Reply = tuple[int, "dict[str, Any] | bytes", dict[str, str]]


def _not_found(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


def _error_body(kind: str) -> dict[str, Any]:
    message, error_type, code = _ERROR_BODIES[kind]
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler never blocks interpreter exit
    request_queue_size = 256  # room for a burst of concurrent connections (benchmarks use 16+)
    allow_reuse_address = True


def _make_handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API; every reply has Content-Length
        # headers and body go out in two writes: with Nagle on, the body waits for the client's
        # delayed ACK (~40 ms per call on Linux), which would dwarf a benchmark's fixed latency
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr lines
            pass

        def do_GET(self) -> None:
            if self._batch_route("GET"):
                return
            if self.path.rstrip("/") != "/v1/models":
                self._send_json(404, _not_found(f"no route {self.path}"))
                return
            model = {"id": server.model, "object": "model", "created": 0, "owned_by": "medtune"}
            self._send_json(200, {"object": "list", "data": [model]})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self._batch_route("POST", raw):
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send_json(404, _not_found(f"no route {self.path}"))
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
                return
            unsupported = [p for p in TOKEN_LIMIT_PARAMS if p in body and p not in server.token_limit_params]
            if unsupported:
                message = f"Unsupported parameter: '{unsupported[0]}' is not supported with this model."
                error = {"message": message, "type": "invalid_request_error", "code": "unsupported_parameter"}
                self._send_json(400, {"error": error})
                return
            auth = self.headers.get("Authorization", "")
            status, payload, headers = server._answer(self.path, body, auth.removeprefix("Bearer ") if auth else None)
            if status == DROPPED:
                self._drop(payload)
            elif isinstance(payload, bytes):
                self._send_bytes(status, payload, headers)
            else:
                self._send_json(status, payload, headers)

        # -- the Files and Batch API (medtune.testing.openai_batches) ----------------------------------
        def _batch_route(self, method: str, raw: bytes = b"") -> bool:
            """Serve /v1/files and /v1/batches; False for every other path."""
            parts = urlsplit(self.path).path.strip("/").split("/")
            if parts[:2] not in (["v1", "files"], ["v1", "batches"]):
                return False
            if not server.batch_api:  # a server without the Batch API (vLLM, Ollama) answers 404
                self._send_json(404, _not_found(f"no route {self.path}"))
                return True
            store, rest = server.batch_store, parts[2:]
            try:
                if parts[1] == "files" and method == "POST" and not rest:
                    self._send_json(200, store.upload(self.headers.get("Content-Type", ""), raw))
                elif parts[1] == "files" and method == "GET" and len(rest) == 1:
                    self._send_json(200, store.file(rest[0]))
                elif parts[1] == "files" and method == "GET" and rest[1:] == ["content"]:
                    self._send_bytes(200, store.content(rest[0]), content_type="application/octet-stream")
                elif parts[1] == "batches" and method == "POST" and not rest:
                    self._send_json(200, store.create(json.loads(raw)))
                elif parts[1] == "batches" and method == "GET" and not rest:
                    self._send_json(200, store.list())
                elif parts[1] == "batches" and method == "GET" and len(rest) == 1:
                    self._send_json(200, store.retrieve(rest[0], server._answer_line))
                else:
                    self._send_json(404, _not_found(f"no route {self.path}"))
            except NotFound as missing:
                self._send_json(404, _not_found(f"No such object: {missing}"))
            return True

        def _drop(self, reply: dict[str, Any] | bytes) -> None:
            """Headers promising the whole reply and half of it (a reply given), or nothing; then the connection
            closes."""
            if reply:
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            self._send_bytes(status, json.dumps(payload, ensure_ascii=False).encode(), headers)

        def _send_bytes(
            self, status: int, data: bytes, headers: dict[str, str] | None = None, content_type: str = JSON_TYPE
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): nothing to do
                self.close_connection = True

    return Handler
