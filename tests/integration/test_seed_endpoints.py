"""The seeds' own chat endpoints, answering as their documents show:
seed 004's POST /proxy and /proxy/stream, seed 001's POST /api/v1/inference(/stream).
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from tests.conftest import MASTER_KEY, RunningGateway, default_config
from tests.fakes.openai import FakeOpenAI

USER = [{"role": "user", "content": "hello big world"}]


@pytest.fixture
def gw(gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str]) -> RunningGateway:
    fake_upstream[0].reset()
    extra = "  - {name: openai/gpt-4o, provider: fakeai, model: fake-plain}\n"
    return gateway_factory(default_config(fake_upstream[1], extra))


def _post(
    gw: RunningGateway, path: str, doc: Any, key: str | None = MASTER_KEY
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.server.port, timeout=20)
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn.request("POST", path, json.dumps(doc), headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _events(body: bytes) -> list[Any]:
    out = []
    for block in body.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


# --- seed 004 -------------------------------------------------------------------------------


def test_proxy_answers_an_openai_chat_response(gw: RunningGateway, fake: FakeOpenAI) -> None:
    status, headers, body = _post(gw, "/proxy", {"model": "gpt-test", "messages": USER})
    assert status == 200 and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"] == {
        "role": "assistant",
        "content": "fake: hello big world",
        "refusal": None,
    }
    assert doc["usage"]["total_tokens"] == 7
    assert fake.requests[-1].body["stream"] is False  # type: ignore[index]


def test_proxy_stream_emits_data_chunks_and_done(gw: RunningGateway) -> None:
    status, headers, body = _post(gw, "/proxy/stream", {"model": "gpt-test", "messages": USER})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = _events(body)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "fake: hello big world"


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([{"role": "tool", "content": "x", "tool_call_id": "a"}], "messages[0].role"),
        ([{"role": "developer", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": ""}], "messages[0].content"),
        ([{"role": "user", "content": "   "}], "messages[0].content"),
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            "messages[1].role",
        ),
    ],
)
def test_proxy_validation_follows_seed_004(
    gw: RunningGateway, messages: list[Any], param: str
) -> None:
    for path in ("/proxy", "/proxy/stream"):
        status, _, body = _post(gw, path, {"model": "gpt-test", "messages": messages})
        assert status == 400, body
        err = json.loads(body)["error"]
        assert err["param"] == param and err["type"] == "invalid_request_error"


def test_proxy_allows_a_trailing_system_message(gw: RunningGateway) -> None:
    msgs = [*USER, {"role": "system", "content": "be brief"}]
    status, _, body = _post(gw, "/proxy", {"model": "gpt-test", "messages": msgs})
    assert status == 200, body


def test_proxy_requires_authorization(gw: RunningGateway) -> None:
    status, _, body = _post(gw, "/proxy", {"model": "gpt-test", "messages": USER}, key=None)
    assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"


# --- seed 001 -------------------------------------------------------------------------------


def test_inference_returns_the_chat_completion_under_the_requested_model(
    gw: RunningGateway, fake: FakeOpenAI
) -> None:
    req = {
        "model": "openai/gpt-4o",
        "messages": [{"role": "user", "content": "Hello, world!"}],
        "temperature": 0.7,
        "max_tokens": 100,
        "stream": False,
    }
    status, _, body = _post(gw, "/api/v1/inference", req)
    assert status == 200
    doc = json.loads(body)
    assert doc["model"] == "openai/gpt-4o" and doc["object"] == "chat.completion"
    assert doc["choices"][0]["finish_reason"] == "stop"
    assert doc["choices"][0]["message"]["content"] == "fake: Hello, world!"
    assert set(doc["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert isinstance(doc["created"], int) and doc["id"]
    sent = fake.requests[-1].body
    assert sent is not None and sent["temperature"] == 0.7 and sent["max_tokens"] == 100


def test_inference_stream_is_sse_ending_with_done(gw: RunningGateway) -> None:
    req = {"model": "openai/gpt-4o", "messages": USER, "max_tokens": 500}
    status, headers, body = _post(gw, "/api/v1/inference/stream", req)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = _events(body)
    assert events[-1] == "[DONE]"
    first = events[0]
    assert first["object"] == "chat.completion.chunk" and first["model"] == "openai/gpt-4o"
    assert first["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "fake: hello big world"


def test_inference_errors_use_seed_001_shape(gw: RunningGateway) -> None:
    status, _, body = _post(gw, "/api/v1/inference", {"messages": USER})
    assert status == 400
    err = json.loads(body)["error"]
    assert err["code"] == 400 and err["type"] == "validation"
    assert err["details"] == {"field": "model", "message": err["message"]}
    assert err["param"] == "model"
    status, _, body = _post(gw, "/api/v1/inference", {"model": "nope/none", "messages": USER})
    assert status == 404
    err = json.loads(body)["error"]
    assert err["code"] == 404 and err["type"] == "not_found"
    status, _, body = _post(gw, "/api/v1/inference/stream", {"model": "gpt-test"})
    assert status == 400 and json.loads(body)["error"]["details"]["field"] == "messages"


def test_inference_upstream_failure_is_typed_openrouter(gw: RunningGateway) -> None:
    # The seed's "openrouter" type stands for "the upstream provider failed".
    status, _, body = _post(gw, "/api/v1/inference", {"model": "hang-model", "messages": USER})
    assert status == 504
    err = json.loads(body)["error"]
    assert err["code"] == 504 and err["type"] == "openrouter"


def test_a_catalog_id_is_callable_by_a_key_limited_to_the_public_name(
    gw: RunningGateway, fake: FakeOpenAI
) -> None:
    from tests.integration.accounts import new_key

    key = new_key(gw.url, models=["gpt-test"])["key"]
    status, listing = gw.get_json("/api/v1/models", key=key)
    assert status == 200
    assert [m["id"] for m in listing["data"]] == ["fakeai/gpt-test"]
    req = {"model": "fakeai/gpt-test", "messages": USER}
    status, _, body = _post(gw, "/api/v1/inference", req, key=key)
    assert status == 200, body
    assert json.loads(body)["model"] == "fakeai/gpt-test"
    assert fake.requests[-1].body["model"] == "fake-plain"  # type: ignore[index]
    status, _, body = _post(gw, "/api/v1/inference", {**req, "model": "tool-model"}, key=key)
    assert status == 403 and json.loads(body)["error"]["type"] == "permission"
