"""The official anthropic SDK against the gateway's /v1/messages: passed through to an Anthropic
upstream (tests/fakes/anthropic.py) and translated to an OpenAI-compatible one
(tests/fakes/openai.py), plain, streamed and through a tool-use round trip.

Wire formats: https://docs.anthropic.com/en/api/messages, .../build-with-claude/streaming,
https://docs.anthropic.com/en/api/messages-count-tokens (see the fakes' docstrings).
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from tests.conftest import MASTER_KEY, RunningGateway
from tests.fakes.openai import FakeOpenAI
from tests.integration.accounts import new_key

KEY = "test-anthropic-upstream-key-2"
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
    },
}


def _config(anthropic_url: str, openai_url: str) -> str:
    return f"""\
master_key: {MASTER_KEY}
providers:
  - name: claude
    type: anthropic
    base_url: {anthropic_url}/v1
    api_key: {KEY}
  - name: fakeai
    type: openai
    base_url: {openai_url}/v1
    api_key: sk-fake-openai-upstream
models:
  - {{name: claude-fake, provider: claude, model: claude-fake}}
  - {{name: claude-tool, provider: claude, model: claude-tool}}
  - {{name: claude-alias, provider: claude, model: claude-fake}}
  - {{name: claude-e529, provider: claude, model: claude-error-529}}
  - {{name: gpt-test, provider: fakeai, model: fake-plain}}
  - {{name: tool-model, provider: fakeai, model: fake-tool}}
  - {{name: gpt-e500, provider: fakeai, model: fake-error-500}}
  - name: msg-failover
    deployments:
      - {{provider: fakeai, model: fake-early-error}}
      - {{provider: fakeai, model: fake-plain}}
  - name: small-context
    provider: fakeai
    model: fake-context-10
    context_window_fallbacks: [gpt-test]
"""


@pytest.fixture
def env(
    gateway_factory: Any,
    fake_anthropic_upstream: tuple[Any, str],
    fake_upstream: tuple[FakeOpenAI, str],
) -> tuple[anthropic.Anthropic, Any, FakeOpenAI, RunningGateway]:
    fa, fo = fake_anthropic_upstream[0], fake_upstream[0]
    fa.reset()
    fo.reset()
    gw = gateway_factory(_config(fake_anthropic_upstream[1], fake_upstream[1]))
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    return client, fa, fo, gw


USER: Any = [{"role": "user", "content": "hello big world"}]


# --- passthrough ----------------------------------------------------------------------------


def test_passthrough_upstream_receives_exactly_what_the_client_sent(env: Any) -> None:
    client, fa, _, _ = env
    msg = client.messages.create(
        model="claude-fake",
        max_tokens=100,
        system=[{"type": "text", "text": "be terse", "cache_control": {"type": "ephemeral"}}],
        messages=USER,
        metadata={"user_id": "u-42"},
        stop_sequences=["STOP"],
        extra_body={"top_k": 5},
        extra_headers={
            "anthropic-beta": "prompt-caching-2024-07-31",
            "anthropic-version": "2023-06-01",
        },
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "fake: hello big world"
    assert msg.model == "claude-fake" and msg.stop_reason == "end_turn"
    assert msg.usage.cache_read_input_tokens == 5  # the fake saw the cache_control block
    seen = fa.requests[-1]
    assert seen.path == "/v1/messages"
    sent = json.loads(seen.raw)
    assert sent == {
        "max_tokens": 100,
        "messages": USER,
        "model": "claude-fake",
        "metadata": {"user_id": "u-42"},
        "stop_sequences": ["STOP"],
        "system": [{"type": "text", "text": "be terse", "cache_control": {"type": "ephemeral"}}],
        "top_k": 5,
    }
    assert seen.headers["x-api-key"] == KEY  # the upstream's key, never the gateway's
    assert seen.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert seen.headers["anthropic-version"] == "2023-06-01"  # the client's own version


def test_passthrough_bytes_are_identical_and_alias_only_swaps_the_model(
    env: Any,
) -> None:
    client, fa, _, gw = env
    body = {"model": "claude-fake", "max_tokens": 20, "messages": USER, "temperature": 0.5}
    raw = json.dumps(body)  # as post_raw writes it
    status, _, out = gw.post_raw("/v1/messages", body, {"anthropic-version": "2023-06-01"})
    assert status == 200 and json.loads(out)["content"][0]["text"] == "fake: hello big world"
    assert fa.requests[-1].raw == raw.encode()  # byte for byte
    client.messages.create(model="claude-alias", max_tokens=20, messages=USER)
    sent = json.loads(fa.requests[-1].raw)
    assert sent["model"] == "claude-fake"
    reply = client.messages.create(model="claude-alias", max_tokens=20, messages=USER)
    assert reply.model == "claude-alias"


def test_passthrough_stream_relays_anthropic_events(env: Any) -> None:
    client, fa, _, _ = env
    with client.messages.stream(model="claude-fake", max_tokens=50, messages=USER) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "fake: hello big world"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens == 3
    assert json.loads(fa.requests[-1].raw)["stream"] is True


def test_passthrough_tool_use_round_trip(env: Any) -> None:
    client, fa, _, _ = env
    fa.reset()
    first = client.messages.create(
        model="claude-tool", max_tokens=100, tools=[WEATHER], messages=USER
    )
    tool = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use"
    assert tool.name == "get_weather" and tool.input == {"city": "Paris", "unit": "c"}
    convo: Any = [
        *USER,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny, 21C"}],
        },
    ]
    second = client.messages.create(
        model="claude-fake", max_tokens=100, tools=[WEATHER], messages=convo
    )
    assert second.content[0].type == "text"
    assert second.content[0].text == "fake: tool said sunny, 21C"
    assert len(fa.requests) == 2 and json.loads(fa.requests[1].raw)["messages"] == convo


def test_passthrough_streamed_tool_use_accumulates_input_json(env: Any) -> None:
    client, _, _, _ = env
    with client.messages.stream(
        model="claude-tool", max_tokens=100, tools=[WEATHER], messages=USER
    ) as s:
        final = s.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    assert tool.input == {"city": "Paris", "unit": "c"}
    assert final.stop_reason == "tool_use"


def test_passthrough_upstream_error_is_anthropic_shaped(env: Any) -> None:
    client, _, _, _ = env
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="claude-e529", max_tokens=10, messages=USER)
    err = info.value
    assert err.status_code == 503
    body: Any = err.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"
    assert set(body["error"]) >= {"message", "type", "param", "code"}


def test_count_tokens_passthrough_and_estimate(env: Any) -> None:
    client, fa, _, _ = env
    counted = client.messages.count_tokens(model="claude-fake", messages=USER)
    assert counted.input_tokens == 3  # the fake's own count (words)
    assert fa.requests[-1].path == "/v1/messages/count_tokens"
    n = len(fa.requests)
    estimate = client.messages.count_tokens(
        model="gpt-test", messages=[{"role": "user", "content": "one two three four five"}]
    )
    assert 5 <= estimate.input_tokens <= 20  # tiktoken's count plus a small overhead
    assert len(fa.requests) == n  # no upstream call for a non-Anthropic model


# --- translated -----------------------------------------------------------------------------


def test_translated_plain_message(env: Any) -> None:
    client, _, fo, _ = env
    msg = client.messages.create(
        model="gpt-test",
        max_tokens=64,
        system="be nice",
        messages=USER,
        extra_body={"temperature": 0.3},  # (this SDK version no longer takes it as an argument)
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text" and msg.content[0].text == "fake: hello big world"
    assert msg.model == "gpt-test" and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 5 and msg.usage.output_tokens == 4
    sent = fo.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body is not None
    assert sent.body["messages"] == [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "hello big world"},
    ]
    assert sent.body["max_tokens"] == 64 and sent.body["temperature"] == 0.3


def test_translated_stream_has_anthropic_events(env: Any) -> None:
    client, _, fo, _ = env
    kinds: list[str] = []
    with client.messages.stream(model="gpt-test", max_tokens=64, messages=USER) as s:
        for event in s:
            kinds.append(event.type)
        final = s.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "fake: hello big world"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    assert fo.requests[-1].body["stream_options"] == {"include_usage": True}  # type: ignore[index]


def test_translated_tool_use_round_trip(env: Any) -> None:
    client, _, fo, _ = env
    first = client.messages.create(
        model="tool-model", max_tokens=100, tools=[WEATHER], messages=USER
    )
    tool = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use"
    assert tool.id == "call_fake123" and tool.input == {"city": "Paris", "unit": "c"}
    sent_tools = fo.requests[-1].body["tools"]  # type: ignore[index]
    assert sent_tools == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    convo: Any = [
        *USER,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}],
        },
    ]
    second = client.messages.create(
        model="gpt-test", max_tokens=100, tools=[WEATHER], messages=convo
    )
    assert second.content[0].type == "text"
    assert second.content[0].text == "fake: hello big world"
    msgs = fo.requests[-1].body["messages"]  # type: ignore[index]
    assert msgs[1]["role"] == "assistant"
    assert msgs[1]["tool_calls"][0]["id"] == "call_fake123"
    assert json.loads(msgs[1]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris",
        "unit": "c",
    }
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_fake123", "content": "sunny"}


def test_translated_streamed_tool_use(env: Any) -> None:
    client, _, _, _ = env
    with client.messages.stream(
        model="tool-model", max_tokens=100, tools=[WEATHER], messages=USER
    ) as s:
        final = s.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    assert tool.name == "get_weather" and tool.input == {"city": "Paris", "unit": "c"}
    assert final.stop_reason == "tool_use"


def test_translated_upstream_error_and_bad_input(env: Any) -> None:
    client, _, _, gw = env
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="gpt-e500", max_tokens=10, messages=USER)
    assert info.value.status_code == 502
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="gpt-test", max_tokens=0, messages=USER)
    body: Any = bad.value.body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "max_tokens"
    status, _, out = gw.post_raw("/v1/messages", {"model": "gpt-test", "messages": USER})
    assert status == 400 and json.loads(out)["error"]["param"] == "max_tokens"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=10, messages=USER)


def test_server_tools_need_an_anthropic_deployment(env: Any) -> None:
    client, _, _, _ = env
    search: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="gpt-test", max_tokens=10, messages=USER, tools=[search])
    body: Any = info.value.body
    assert body["error"]["code"] == "unsupported_tool"


def test_translated_stream_fails_over_on_an_early_error_event(env: Any) -> None:
    client, _, fo, _ = env
    with client.messages.stream(model="msg-failover", max_tokens=50, messages=USER) as s:
        final = s.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "fake: hello big world"
    assert [r.body["model"] for r in fo.requests[-2:]] == ["fake-early-error", "fake-plain"]


def test_context_window_fallback_applies_to_messages(env: Any) -> None:
    client, _, fo, _ = env
    msg = client.messages.create(
        model="small-context",
        max_tokens=50,
        messages=[{"role": "user", "content": "a message well over ten characters"}],
    )
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "fake: a message well over ten characters"
    assert [r.body["model"] for r in fo.requests[-2:]] == ["fake-context-10", "fake-plain"]


def test_count_tokens_estimate_is_rate_limited(env: Any) -> None:
    _, _, _, gw = env

    key = new_key(gw.url, rpm=1)["key"]
    c = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=20)
    first = c.messages.count_tokens(model="gpt-test", messages=USER)
    assert first.input_tokens > 0
    with pytest.raises(anthropic.RateLimitError) as info:
        c.messages.count_tokens(model="gpt-test", messages=USER)
    body: Any = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"


def test_a_wrong_key_is_refused_in_anthropic_shape(env: Any) -> None:
    _, _, _, gw = env
    bad = anthropic.Anthropic(base_url=gw.url, api_key="sk-wrong-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model="gpt-test", max_tokens=5, messages=USER)
    body: Any = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert "sk-wrong-key" not in str(body)
