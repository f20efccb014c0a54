"""The OpenAI SDK through the gateway to a Bedrock runtime (tests/fakes/bedrock.py), which checks
the SigV4 signature of every call and speaks the Converse / ConverseStream wire format
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, RunningGateway
from tests.fakes.server import ServerThread

USER = [{"role": "user", "content": "hello bedrock"}]
TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def fake_bedrock_upstream() -> Any:
    from tests.fakes.bedrock import FakeBedrock

    app = FakeBedrock()
    server = ServerThread(app).start()
    yield app, server.url
    server.stop()


def _env(url: str, secret: str = "fake-secret") -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "AKIDFAKE",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": "eu-west-1",
        "BEDROCK_BASE_URL": url,
    }


@pytest.fixture
def bed(gateway_factory: Any, fake_bedrock_upstream: tuple[Any, str]) -> tuple[Any, RunningGateway]:
    app, url = fake_bedrock_upstream
    app.reset()
    return app, gateway_factory(f"master_key: {MASTER_KEY}\n", env=_env(url))


def test_plain_signed_and_translated(bed: tuple[Any, RunningGateway]) -> None:
    fake, gw = bed
    r = gw.client().chat.completions.create(
        model="bedrock/fake-bedrock", messages=[{"role": "system", "content": "be brief"}, *USER]
    )  # type: ignore[list-item]
    assert r.choices[0].message.content == "fake: hello bedrock"
    assert r.usage is not None and r.usage.total_tokens > 0
    seen = fake.requests[-1]
    assert seen.path == "/model/fake-bedrock/converse"
    assert seen.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDFAKE/")
    assert "/eu-west-1/bedrock/aws4_request" in seen.headers["authorization"]
    assert seen.body["system"] == [{"text": "be brief"}]


def test_stream_eventstream_to_sse(bed: tuple[Any, RunningGateway]) -> None:
    _, gw = bed
    chunks = list(
        gw.client().chat.completions.create(
            model="bedrock/fake-bedrock",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "fake: hello bedrock"
    )
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_tool_round_trip_image_json(bed: tuple[Any, RunningGateway]) -> None:
    _, gw = bed
    c = gw.client()
    r = c.chat.completions.create(model="bedrock/fake-bedrock-tool", messages=USER, tools=[TOOL])
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}  # type: ignore[union-attr]
    follow: Any = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r2 = c.chat.completions.create(model="bedrock/fake-bedrock", messages=follow, tools=[TOOL])
    assert r2.choices[0].message.content == "fake: tool said sunny"
    with c.chat.completions.stream(
        model="bedrock/fake-bedrock-tool", messages=USER, tools=[TOOL]
    ) as s:
        final = s.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [json.loads(t.function.arguments) for t in calls] == [{"city": "Paris", "unit": "c"}]  # type: ignore[union-attr]
    png = base64.b64encode(b"\x89PNGfake").decode()
    img: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            ],
        }
    ]
    r3 = c.chat.completions.create(model="bedrock/fake-bedrock", messages=img)
    assert r3.choices[0].message.content == "fake: see [images: 1]"
    r4 = c.chat.completions.create(
        model="bedrock/fake-bedrock-tool",
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "v", "schema": {"type": "object"}},
        },
    )
    assert json.loads(r4.choices[0].message.content or "") == {"answer": "yes", "confidence": 0.9}


@pytest.mark.parametrize(
    ("model", "exc", "status", "code"),
    [
        ("fake-bedrock-error-400", openai.BadRequestError, 400, None),
        ("fake-bedrock-error-403", openai.InternalServerError, 502, "upstream_auth_failed"),
        ("fake-bedrock-error-404", openai.NotFoundError, 404, None),
        ("fake-bedrock-error-429", openai.RateLimitError, 429, None),
        ("fake-bedrock-error-500", openai.InternalServerError, 502, None),
        ("fake-bedrock-error-503", openai.InternalServerError, 503, None),
        ("fake-bedrock-context", openai.BadRequestError, 400, "context_length_exceeded"),
    ],
)
def test_errors(
    bed: tuple[Any, RunningGateway],
    model: str,
    exc: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    _, gw = bed
    with pytest.raises(exc) as e:
        gw.client().chat.completions.create(model=f"bedrock/{model}", messages=USER)
    assert e.value.status_code == status
    if code:
        assert e.value.code == code
    assert "fake-secret" not in json.dumps(e.value.body)


def test_wrong_secret_is_a_signature_failure(
    gateway_factory: Any, fake_bedrock_upstream: tuple[Any, str]
) -> None:
    _, url = fake_bedrock_upstream
    gw = gateway_factory(f"master_key: {MASTER_KEY}\n", env=_env(url, secret="not-the-secret"))
    with pytest.raises(openai.InternalServerError) as e:
        gw.client().chat.completions.create(model="bedrock/fake-bedrock", messages=USER)
    assert e.value.status_code == 502 and e.value.code == "upstream_auth_failed"


def test_truncated_stream_is_error_event(bed: tuple[Any, RunningGateway]) -> None:
    _, gw = bed
    with pytest.raises(openai.APIError) as e:
        list(
            gw.client().chat.completions.create(
                model="bedrock/fake-bedrock-truncate", messages=USER, stream=True
            )
        )
    assert "ended before the response was complete" in e.value.message


def test_config_provider_with_region_and_a_colon_model_id(
    gateway_factory: Any, fake_bedrock_upstream: tuple[Any, str]
) -> None:
    app, url = fake_bedrock_upstream
    app.reset()
    env = _env(url)
    del env["AWS_REGION"]
    cfg = (
        f"master_key: {MASTER_KEY}\nproviders:\n  - name: aws\n    type: bedrock\n"
        f"    region: ap-south-1\n    base_url: {url}\n"
        "models:\n  - name: claude-on-aws\n    provider: aws\n"
        "    model: 'us.anthropic.claude-fake-v1:0'\n"
    )
    gw = gateway_factory(cfg, env=env)
    r = gw.client().chat.completions.create(model="claude-on-aws", messages=USER)
    assert r.choices[0].message.content == "fake: hello bedrock"
    seen = app.requests[-1]
    assert "/ap-south-1/bedrock/aws4_request" in seen.headers["authorization"]
    assert seen.path.startswith("/model/us.anthropic.claude-fake-v1")
