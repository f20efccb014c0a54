"""The OpenAI SDK through the gateway to a Cohere Chat v2 upstream (tests/fakes/cohere.py).

Wire format: https://docs.cohere.com/reference/chat and
https://docs.cohere.com/reference/chat-stream (see the fake's docstring).
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, RunningGateway

KEY = "co-fake-key-0123456789abcdef"
USER = [{"role": "user", "content": "hello cohere"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def co(gateway_factory: Any, fake_cohere_upstream: tuple[Any, str]) -> tuple[Any, RunningGateway]:
    app, url = fake_cohere_upstream
    app.reset()
    cfg = (
        f"master_key: {MASTER_KEY}\nproviders:\n  - name: co\n    type: cohere\n"
        f"    base_url: {url}\n    api_key: {KEY}\n"
        "    timeouts: {connect: 2, first_byte: 5, total: 20}\n"
    )
    return app, gateway_factory(cfg)


def test_plain_and_headers(co: tuple[Any, RunningGateway]) -> None:
    fake, gw = co
    r = gw.client().chat.completions.create(model="co/command-fake", messages=USER, max_tokens=30)
    assert r.choices[0].message.content == "fake: hello cohere"
    assert r.choices[0].finish_reason == "stop" and r.model == "co/command-fake"
    assert r.usage is not None and r.usage.completion_tokens > 0
    seen = fake.requests[-1]
    assert seen.path == "/v2/chat"
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body["model"] == "command-fake" and seen.body["max_tokens"] == 30


def test_stream(co: tuple[Any, RunningGateway]) -> None:
    _, gw = co
    chunks = list(
        gw.client().chat.completions.create(
            model="co/command-fake",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "fake: hello cohere"
    )
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_tool_round_trip_and_stream_helper(co: tuple[Any, RunningGateway]) -> None:
    _, gw = co
    c = gw.client()
    r = c.chat.completions.create(model="co/command-tool", messages=USER, tools=[WEATHER_TOOL])
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}  # type: ignore[union-attr]
    follow: Any = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r2 = c.chat.completions.create(model="co/command-fake", messages=follow, tools=[WEATHER_TOOL])
    assert r2.choices[0].message.content == "fake: tool said sunny"
    with c.chat.completions.stream(
        model="co/command-two-tools", messages=USER, tools=[WEATHER_TOOL]
    ) as s:
        final = s.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(t.function.name, json.loads(t.function.arguments)) for t in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris", "unit": "c"}),
        ("get_time", {"city": "Paris"}),
    ]


def test_image_and_json(co: tuple[Any, RunningGateway]) -> None:
    _, gw = co
    msgs: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    r = gw.client().chat.completions.create(model="co/command-fake", messages=msgs)
    assert r.choices[0].message.content == "fake: what is this [images: 1]"
    r2 = gw.client().chat.completions.create(
        model="co/command-fake",
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "v", "schema": {"type": "object"}},
        },
    )
    assert json.loads(r2.choices[0].message.content or "") == {"answer": "yes", "confidence": 0.9}


@pytest.mark.parametrize(
    ("model", "exc", "status", "code"),
    [
        ("command-error-400", openai.BadRequestError, 400, None),
        ("command-error-401", openai.InternalServerError, 502, "upstream_auth_failed"),
        ("command-error-404", openai.NotFoundError, 404, None),
        ("command-error-429", openai.RateLimitError, 429, None),
        ("command-error-500", openai.InternalServerError, 502, None),
        ("command-error-503", openai.InternalServerError, 503, None),
        ("command-context", openai.BadRequestError, 400, "context_length_exceeded"),
    ],
)
def test_errors(
    co: tuple[Any, RunningGateway],
    model: str,
    exc: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    _, gw = co
    with pytest.raises(exc) as e:
        gw.client().chat.completions.create(model=f"co/{model}", messages=USER)
    assert e.value.status_code == status
    if code:
        assert e.value.code == code
    if status == 429:
        assert e.value.response.headers["retry-after"] == "7"
    assert KEY not in json.dumps(e.value.body)


def test_truncated_stream_is_error_event(co: tuple[Any, RunningGateway]) -> None:
    _, gw = co
    with pytest.raises(openai.APIError) as e:
        list(
            gw.client().chat.completions.create(
                model="co/command-truncate", messages=USER, stream=True
            )
        )
    assert "ended before the response was complete" in e.value.message


def test_zero_config_command_prefix(
    gateway_factory: Any, fake_cohere_upstream: tuple[Any, str]
) -> None:
    app, url = fake_cohere_upstream
    gw = gateway_factory(
        f"master_key: {MASTER_KEY}\n", env={"COHERE_API_KEY": KEY, "COHERE_BASE_URL": url}
    )
    r = gw.client().chat.completions.create(model="command-fake", messages=USER)
    assert r.choices[0].message.content == "fake: hello cohere"
    assert app.requests[-1].headers["authorization"] == f"Bearer {KEY}"
