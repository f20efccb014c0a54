"""The OpenAI SDK through the gateway to a Gemini (AI Studio) upstream (tests/fakes/gemini.py).

Wire format: https://ai.google.dev/api/generate-content (see the fake's docstring).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, RunningGateway

KEY = "AIzaFakeGeminiKey0123456789"
USER = [{"role": "user", "content": "hello gemini"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture
def gem(gateway_factory: Any, fake_gemini_upstream: tuple[Any, str]) -> tuple[Any, RunningGateway]:
    app, url = fake_gemini_upstream
    app.reset()
    cfg = (
        f"master_key: {MASTER_KEY}\nproviders:\n  - name: gem\n    type: gemini\n"
        f"    base_url: {url}/v1beta\n    api_key: {KEY}\n"
        "    timeouts: {connect: 2, first_byte: 5, total: 20}\n"
    )
    return app, gateway_factory(cfg)


def test_plain_and_headers(gem: tuple[Any, RunningGateway]) -> None:
    fake, gw = gem
    msgs: Any = [{"role": "system", "content": "be brief"}, *USER]
    r = gw.client().chat.completions.create(model="gem/gemini-fake", messages=msgs, max_tokens=40)
    assert r.choices[0].message.content == "fake: hello gemini"
    assert r.choices[0].finish_reason == "stop" and r.model == "gem/gemini-fake"
    assert r.usage is not None and r.usage.completion_tokens > 0
    seen = fake.requests[-1]
    assert seen.path == "/v1beta/models/gemini-fake:generateContent"
    assert seen.headers["x-goog-api-key"] == KEY
    assert seen.body["systemInstruction"]["parts"][0]["text"] == "be brief"
    assert seen.body["generationConfig"]["maxOutputTokens"] == 40


def test_stream(gem: tuple[Any, RunningGateway]) -> None:
    fake, gw = gem
    chunks = list(
        gw.client().chat.completions.create(
            model="gem/gemini-fake",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "fake: hello gemini"
    assert fake.requests[-1].path == "/v1beta/models/gemini-fake:streamGenerateContent"
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_tool_round_trip(gem: tuple[Any, RunningGateway]) -> None:
    fake, gw = gem
    c = gw.client()
    r = c.chat.completions.create(model="gem/gemini-tool", messages=USER, tools=[WEATHER_TOOL])
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}  # type: ignore[union-attr]
    decl = fake.requests[-1].body["tools"][0]["functionDeclarations"][0]
    assert decl["name"] == "get_weather" and "additionalProperties" not in decl["parameters"]
    follow: Any = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r2 = c.chat.completions.create(model="gem/gemini-fake", messages=follow, tools=[WEATHER_TOOL])
    assert r2.choices[0].message.content == "fake: tool said sunny"


def test_streamed_tool_calls_with_sdk_helper(gem: tuple[Any, RunningGateway]) -> None:
    _, gw = gem
    with gw.client().chat.completions.stream(
        model="gem/gemini-two-tools", messages=USER, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(t.function.name, json.loads(t.function.arguments)) for t in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris", "unit": "c"}),
        ("get_time", {"city": "Paris"}),
    ]
    assert len({t.id for t in calls}) == 2


def test_image_and_json_schema(gem: tuple[Any, RunningGateway]) -> None:
    fake, gw = gem
    png = base64.b64encode(b"\x89PNGfake").decode()
    msgs: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            ],
        }
    ]
    r = gw.client().chat.completions.create(model="gem/gemini-fake", messages=msgs)
    assert r.choices[0].message.content == "fake: what is this [images: 1]"
    parts = fake.requests[-1].body["contents"][0]["parts"]
    assert {"inlineData": {"mimeType": "image/png", "data": png}} in parts
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    r2 = gw.client().chat.completions.create(
        model="gem/gemini-fake",
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "v", "schema": schema}},
    )
    assert json.loads(r2.choices[0].message.content or "") == {"answer": "yes", "confidence": 0.9}
    gc = fake.requests[-1].body["generationConfig"]
    assert gc["responseMimeType"] == "application/json" and gc["responseSchema"]["type"] in (
        "object",
        "OBJECT",
    )


def test_safety_block_is_content_filter(gem: tuple[Any, RunningGateway]) -> None:
    _, gw = gem
    r = gw.client().chat.completions.create(model="gem/gemini-safety", messages=USER)
    assert r.choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("model", "exc", "status", "code"),
    [
        ("gemini-error-400", openai.BadRequestError, 400, None),
        ("gemini-error-401", openai.InternalServerError, 502, "upstream_auth_failed"),
        ("gemini-error-404", openai.NotFoundError, 404, None),
        ("gemini-error-429", openai.RateLimitError, 429, None),
        ("gemini-error-500", openai.InternalServerError, 502, None),
        ("gemini-error-503", openai.InternalServerError, 503, None),
        ("gemini-context", openai.BadRequestError, 400, "context_length_exceeded"),
    ],
)
def test_errors(
    gem: tuple[Any, RunningGateway],
    model: str,
    exc: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    _, gw = gem
    with pytest.raises(exc) as e:
        gw.client().chat.completions.create(model=f"gem/{model}", messages=USER)
    assert e.value.status_code == status
    if code:
        assert e.value.code == code
    if status == 429:
        assert e.value.response.headers["retry-after"] == "7"
    assert KEY not in json.dumps(e.value.body)


def test_truncated_stream_is_error_event(gem: tuple[Any, RunningGateway]) -> None:
    _, gw = gem
    with pytest.raises(openai.APIError) as e:
        list(
            gw.client().chat.completions.create(
                model="gem/gemini-truncate", messages=USER, stream=True
            )
        )
    assert "ended before the response was complete" in e.value.message


def test_zero_config_gemini_prefix(
    gateway_factory: Any, fake_gemini_upstream: tuple[Any, str]
) -> None:
    app, url = fake_gemini_upstream
    gw = gateway_factory(
        f"master_key: {MASTER_KEY}\n",
        env={"GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": f"{url}/v1beta"},
    )
    r = gw.client().chat.completions.create(model="gemini-fake", messages=USER)
    assert r.choices[0].message.content == "fake: hello gemini"
    assert app.requests[-1].headers["x-goog-api-key"] == KEY
