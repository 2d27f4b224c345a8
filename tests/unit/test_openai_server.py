"""The test server behaves like the OpenAI API as the official client sees it, faults included."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from medtune.testing import Fault, OpenAIServer, unused_base_url


def _client(server: OpenAIServer, timeout: float = 5.0) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=timeout)


def _ask(client: OpenAI, text: str = "こんにちは") -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])


def test_responder_text_reaches_the_client_with_usage_and_the_call_is_logged() -> None:
    with OpenAIServer(lambda req: "答え:" + req["messages"][-1]["content"]) as server:
        reply = _ask(_client(server), "心房細動")
        calls = server.calls
    assert reply.choices[0].message.content == "答え:心房細動"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == len("心房細動")
    assert reply.usage.completion_tokens == len("答え:心房細動")
    assert [(c.path, c.attempt, c.fault, c.api_key) for c in calls] == [("/v1/chat/completions", 0, None, "sk-test")]


def test_models_route_lists_the_served_model() -> None:
    with OpenAIServer(model="local-model") as server:
        ids = [m.id for m in _client(server).models.list()]
    assert ids == ["local-model"]


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        (Fault.rate_limit(retry_after=0.25), openai.RateLimitError, "rate_limit_exceeded"),
        (Fault.quota(), openai.RateLimitError, "insufficient_quota"),
        (Fault.server_error(), openai.InternalServerError, None),
        (Fault.unauthorized(), openai.AuthenticationError, "invalid_api_key"),
        (Fault.forbidden(), openai.PermissionDeniedError, "model_not_allowed"),
        (Fault.unknown_model(), openai.NotFoundError, "model_not_found"),
        (Fault.context_length(), openai.BadRequestError, "context_length_exceeded"),
    ],
)
def test_queued_status_faults_raise_the_clients_typed_errors(fault: Fault, error: type, code: str | None) -> None:
    with OpenAIServer() as server:
        server.fail_next(fault)
        client = _client(server)
        with pytest.raises(error) as caught:
            _ask(client)
        assert _ask(client).choices[0].message.content == "ok"  # the queue held one fault only
    assert caught.value.code == code
    if fault.retry_after is not None:
        assert caught.value.response.headers["retry-after"] == "0.25"


def test_truncate_cuts_the_responders_text_and_reports_length() -> None:
    with OpenAIServer(lambda req: "0123456789") as server:
        server.fail_next(Fault.truncate(keep_fraction=0.3))
        reply = _ask(_client(server))
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("012", "length")


def test_malformed_body_fails_json_decoding() -> None:
    with OpenAIServer() as server:
        server.fail_next(Fault.malformed())
        with pytest.raises(ValueError):
            _ask(_client(server))


def test_empty_choices_is_a_well_formed_reply_without_an_answer() -> None:
    with OpenAIServer() as server:
        server.fail_next(Fault.empty_choices())
        reply = _ask(_client(server))
    assert reply.choices == [] and reply.usage is not None


def test_unused_base_url_refuses_connections() -> None:
    with pytest.raises(openai.APIConnectionError):
        _ask(OpenAI(base_url=unused_base_url(), api_key="k", max_retries=0, timeout=5))


def test_hang_outlasts_the_client_timeout_and_stop_wakes_it() -> None:
    with OpenAIServer() as server:
        server.fail_next(Fault.hang(seconds=60))
        with pytest.raises(openai.APITimeoutError):
            _ask(_client(server, timeout=0.3))
    # leaving the context woke the hanging handler instead of waiting 60 s
    assert not any(t.name == "openai-test-server" for t in threading.enumerate())


def test_fault_for_sees_the_attempt_number_of_identical_requests() -> None:
    def first_try_of_q2_fails(request: dict, attempt: int) -> Fault | None:
        return Fault.server_error() if attempt == 0 and "Q2" in request["messages"][-1]["content"] else None

    with OpenAIServer(fault_for=first_try_of_q2_fails) as server:
        client = _client(server)
        _ask(client, "Q1")
        with pytest.raises(openai.InternalServerError):
            _ask(client, "Q2")
        _ask(client, "Q2")
        log = [(c.body["messages"][-1]["content"], c.attempt, c.fault) for c in server.calls]
    assert log == [("Q1", 0, None), ("Q2", 0, "server_error"), ("Q2", 1, None)]


def test_responder_can_script_a_fault_per_request_and_the_log_records_it() -> None:
    def responder(request: dict) -> str | Fault:
        return Fault.quota() if "bill" in request["messages"][-1]["content"] else "fine"

    with OpenAIServer(responder) as server:
        client = _client(server)
        with pytest.raises(openai.RateLimitError):
            _ask(client, "bill me")
        assert _ask(client, "hi").choices[0].message.content == "fine"
        assert [c.fault for c in server.calls] == ["quota", None]


def test_concurrent_async_requests_are_all_served_and_counted() -> None:
    async def many(server: OpenAIServer) -> list[str]:
        client = AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": str(i)}])
                for i in range(40)
            )
        )
        await client.close()
        return [r.choices[0].message.content or "" for r in replies]

    with OpenAIServer(lambda req: req["messages"][-1]["content"] * 2, latency_s=0.01) as server:
        server.fail_next(Fault.server_error())
        with pytest.raises(openai.InternalServerError):
            asyncio.run(many(server))
        texts = asyncio.run(many(server))
        assert texts == [str(i) * 2 for i in range(40)]
        assert server.request_count == 80


def test_unknown_route_is_404_json() -> None:
    with OpenAIServer() as server:
        url = server.base_url.removesuffix("/v1") + "/v2/nothing"
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url, timeout=5)
        assert caught.value.code == 404
        assert "no route" in json.loads(caught.value.read())["error"]["message"]
