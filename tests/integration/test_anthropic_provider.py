"""The OpenAI SDK through the gateway to an Anthropic upstream (tests/fakes/anthropic.py).

Wire format: https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/docs/build-with-claude/streaming (see the fake's docstring).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, RunningGateway

KEY = "test-anthropic-upstream-key-1"
USER = [{"role": "user", "content": "hello from openai"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _config(url: str) -> str:
    models = [
        ("claude-test", "claude-fake"),
        ("claude-tools", "claude-tool"),
        ("claude-two", "claude-two-tools"),
        ("claude-think", "claude-thinking"),
        ("claude-ctx", "claude-context"),
        ("claude-midstream", "claude-midstream-overloaded"),
        ("claude-cut", "claude-truncate"),
        *((f"claude-e{s}", f"claude-error-{s}") for s in (401, 404, 429, 500, 529)),
    ]
    text = (
        f"master_key: {MASTER_KEY}\nproviders:\n  - name: claude\n    type: anthropic\n"
        f"    base_url: {url}/v1\n    api_key: {KEY}\n"
        "    timeouts: {connect: 2, first_byte: 5, total: 20}\nmodels:\n"
    )
    for public, upstream in models:
        text += f"  - name: {public}\n    provider: claude\n    model: {upstream}\n"
    return text


@pytest.fixture
def anth(
    gateway_factory: Any, fake_anthropic_upstream: tuple[Any, str]
) -> tuple[Any, RunningGateway]:
    app, url = fake_anthropic_upstream
    app.reset()
    return app, gateway_factory(_config(url))


def test_plain_completion_translated_both_ways(anth: tuple[Any, RunningGateway]) -> None:
    fake, gw = anth
    msgs: Any = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "really"},
        *USER,
    ]
    r = gw.client().chat.completions.create(
        model="claude-test", messages=msgs, max_tokens=50, stop=["END"], user="u-7"
    )
    assert r.choices[0].message.content == "fake: hello from openai"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "claude-test" and r.object == "chat.completion"
    assert r.usage is not None and r.usage.completion_tokens == 4
    assert r.usage.total_tokens == r.usage.prompt_tokens + 4
    seen = fake.requests[-1]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == KEY and "authorization" not in seen.headers
    assert seen.headers["anthropic-version"] == "2023-06-01"
    body = seen.body
    assert body["model"] == "claude-fake" and body["max_tokens"] == 50
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-7"}
    assert (
        body["messages"] == [{"role": "user", "content": "hello from openai"}]
        or body["messages"][0]["role"] == "user"
    )
    system = body["system"]
    system_text = system if isinstance(system, str) else " ".join(b["text"] for b in system)
    assert "be brief" in system_text and "really" in system_text


def test_default_max_tokens_is_sent(anth: tuple[Any, RunningGateway]) -> None:
    fake, gw = anth
    gw.client().chat.completions.create(model="claude-test", messages=USER)
    assert (
        isinstance(fake.requests[-1].body["max_tokens"], int)
        and fake.requests[-1].body["max_tokens"] > 0
    )


def test_stream_text_and_usage(anth: tuple[Any, RunningGateway]) -> None:
    _, gw = anth
    chunks = list(
        gw.client().chat.completions.create(
            model="claude-test", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "fake: hello from openai"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.model == "claude-test" for c in chunks)


def test_tool_call_round_trip(anth: tuple[Any, RunningGateway]) -> None:
    fake, gw = anth
    c = gw.client()
    r = c.chat.completions.create(
        model="claude-tools", messages=USER, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls is not None and len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}  # type: ignore[union-attr]
    sent = fake.requests[-1].body
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    assert sent["tool_choice"] == {"type": "auto"}
    follow: Any = [
        *USER,
        {"role": "assistant", "content": msg.content, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    r2 = c.chat.completions.create(model="claude-test", messages=follow, tools=[WEATHER_TOOL])
    assert r2.choices[0].message.content == "fake: tool said sunny, 21C"
    turns = fake.requests[-1].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    tool_use = next(b for b in turns[1]["content"] if b["type"] == "tool_use")
    assert tool_use["id"] == call.id and tool_use["input"] == {"city": "Paris", "unit": "c"}
    result = next(b for b in turns[2]["content"] if b["type"] == "tool_result")
    assert result["tool_use_id"] == call.id


def test_streamed_tool_calls_reassemble_with_the_sdk_stream_helper(
    anth: tuple[Any, RunningGateway],
) -> None:
    _, gw = anth
    with gw.client().chat.completions.stream(
        model="claude-two", messages=USER, tools=[WEATHER_TOOL]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert msg.content == "Let me check."
    assert msg.tool_calls is not None
    assert [(t.function.name, json.loads(t.function.arguments)) for t in msg.tool_calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris", "unit": "c"}),
        ("get_time", {"city": "Paris"}),
    ]


def test_image_input_data_url_and_https(anth: tuple[Any, RunningGateway]) -> None:
    fake, gw = anth
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    msgs: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        }
    ]
    r = gw.client().chat.completions.create(model="claude-test", messages=msgs)
    assert r.choices[0].message.content == "fake: what is this [images: 2]"
    blocks = fake.requests[-1].body["messages"][0]["content"]
    images = [b for b in blocks if b["type"] == "image"]
    assert images[0]["source"] == {"type": "base64", "media_type": "image/png", "data": png}
    assert images[1]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}


def test_json_schema_output(anth: tuple[Any, RunningGateway]) -> None:
    _, gw = anth
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["answer"],
    }
    r = gw.client().chat.completions.create(
        model="claude-tools",
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": schema},
        },
    )
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.tool_calls in (None, [])
    assert json.loads(r.choices[0].message.content or "") == {"answer": "yes", "confidence": 0.9}


def test_thinking_kept_as_reasoning_content(anth: tuple[Any, RunningGateway]) -> None:
    _, gw = anth
    r = gw.client().chat.completions.with_raw_response.create(model="claude-think", messages=USER)
    doc = json.loads(r.text)
    msg = doc["choices"][0]["message"]
    assert msg["reasoning_content"] and msg["content"].startswith("fake:")


@pytest.mark.parametrize(
    ("model", "exc", "status", "code"),
    [
        ("claude-e401", openai.InternalServerError, 502, "upstream_auth_failed"),
        ("claude-e404", openai.NotFoundError, 404, None),
        ("claude-e429", openai.RateLimitError, 429, None),
        ("claude-e500", openai.InternalServerError, 502, None),
        ("claude-e529", openai.InternalServerError, 503, None),
        ("claude-ctx", openai.BadRequestError, 400, "context_length_exceeded"),
    ],
)
def test_errors_map_to_openai_errors(
    anth: tuple[Any, RunningGateway],
    model: str,
    exc: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    _, gw = anth
    with pytest.raises(exc) as e:
        gw.client().chat.completions.create(model=model, messages=USER)
    assert e.value.status_code == status
    if code:
        assert e.value.code == code
    if status == 429:
        assert e.value.response.headers["retry-after"] == "7"
    assert KEY not in str(e.value.body)


def test_midstream_overloaded_becomes_error_event(anth: tuple[Any, RunningGateway]) -> None:
    _, gw = anth
    with pytest.raises(openai.APIError) as e:
        list(
            gw.client().chat.completions.create(
                model="claude-midstream", messages=USER, stream=True
            )
        )
    assert "overloaded" in e.value.message.lower()


def test_truncated_anthropic_stream_is_an_error_event(anth: tuple[Any, RunningGateway]) -> None:
    _, gw = anth
    with pytest.raises(openai.APIError) as e:
        list(gw.client().chat.completions.create(model="claude-cut", messages=USER, stream=True))
    assert "ended before the response was complete" in e.value.message


def test_zero_config_claude_models_route_to_anthropic(
    gateway_factory: Any, fake_anthropic_upstream: tuple[Any, str]
) -> None:
    app, url = fake_anthropic_upstream
    gw = gateway_factory(
        f"master_key: {MASTER_KEY}\n",
        env={"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": f"{url}/v1"},
    )
    r = gw.client().chat.completions.create(model="claude-fake", messages=USER)
    assert r.choices[0].message.content == "fake: hello from openai"
    assert r.model == "claude-fake"
    assert app.requests[-1].headers["x-api-key"] == KEY


def test_created_is_a_real_timestamp(anth: tuple[Any, RunningGateway]) -> None:
    import time

    _, gw = anth
    r = gw.client().chat.completions.create(model="claude-test", messages=USER)
    assert abs(r.created - time.time()) < 60
    chunks = list(
        gw.client().chat.completions.create(model="claude-test", messages=USER, stream=True)
    )
    assert all(abs(c.created - time.time()) < 60 for c in chunks)
