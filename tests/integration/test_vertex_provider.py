"""Gemini on Vertex AI through the gateway: a service account's JWT is exchanged for an OAuth2
token at a fake token endpoint (tests/fakes/google_token.py), then the Gemini fake serves the
Vertex path (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.publishers.models/generateContent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, RunningGateway
from tests.fakes.google_token import FakeGoogleToken, make_service_account
from tests.fakes.server import ServerThread

USER = [{"role": "user", "content": "hello vertex"}]


@pytest.fixture(scope="module")
def token_server() -> Any:
    app = FakeGoogleToken()
    server = ServerThread(app).start()
    yield app, server.url
    server.stop()


@pytest.fixture
def vertex(
    gateway_factory: Any,
    tmp_path: Path,
    token_server: tuple[Any, str],
    fake_gemini_upstream: tuple[Any, str],
) -> tuple[Any, Any, RunningGateway]:
    gem_app, gem_url = fake_gemini_upstream
    gem_app.reset()
    tok_app, tok_url = token_server
    tok_app.reset()
    info, pem = make_service_account(f"{tok_url}/token")
    tok_app.trust(info["private_key_id"], pem)
    creds = tmp_path / "sa.json"
    creds.write_text(json.dumps(info))
    cfg = (
        f"master_key: {MASTER_KEY}\nproviders:\n  - name: vx\n    type: vertex\n"
        f"    base_url: {gem_url}\n    project: fake-project\n    location: europe-west4\n"
        f"    credentials_file: {creds}\n    timeouts: {{connect: 2, first_byte: 5, total: 20}}\n"
    )
    return gem_app, tok_app, gateway_factory(cfg)


def test_plain_and_stream_with_oauth_token(vertex: tuple[Any, Any, RunningGateway]) -> None:
    gem, tok, gw = vertex
    c = gw.client()
    r = c.chat.completions.create(model="vx/gemini-fake", messages=USER)
    assert r.choices[0].message.content == "fake: hello vertex"
    seen = gem.requests[-1]
    assert seen.path == (
        "/v1/projects/fake-project/locations/europe-west4/publishers/google/models/"
        "gemini-fake:generateContent"
    )
    assert seen.headers["authorization"] == "Bearer ya29.fake-1"
    assert "x-goog-api-key" not in seen.headers
    text = "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(model="vx/gemini-fake", messages=USER, stream=True)
        if ch.choices
    )
    assert text == "fake: hello vertex"
    assert gem.requests[-1].path.endswith("gemini-fake:streamGenerateContent")
    assert tok.requests == 1  # the token is cached between calls


def test_tool_call_on_vertex(vertex: tuple[Any, Any, RunningGateway]) -> None:
    _, _, gw = vertex
    tool: Any = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    r = gw.client().chat.completions.create(model="vx/gemini-tool", messages=USER, tools=[tool])
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}  # type: ignore[union-attr]


def test_untrusted_service_account_is_502_upstream_auth_failed(
    gateway_factory: Any,
    tmp_path: Path,
    token_server: tuple[Any, str],
    fake_gemini_upstream: tuple[Any, str],
) -> None:
    _, gem_url = fake_gemini_upstream
    _, tok_url = token_server
    info, _ = make_service_account(f"{tok_url}/token")  # key never trusted by the endpoint
    creds = tmp_path / "sa.json"
    creds.write_text(json.dumps(info))
    gw = gateway_factory(
        f"master_key: {MASTER_KEY}\nproviders:\n  - name: vx\n    type: vertex\n"
        f"    base_url: {gem_url}\n    project: p\n    credentials_file: {creds}\n"
    )
    with pytest.raises(openai.InternalServerError) as e:
        gw.client().chat.completions.create(model="vx/gemini-fake", messages=USER)
    assert e.value.status_code == 502 and e.value.code == "upstream_auth_failed"
    assert "PRIVATE KEY" not in json.dumps(e.value.body)


def test_missing_credentials_file_is_a_config_error(tmp_path: Path) -> None:
    from llm_proxy.config.load import ConfigError, load_config
    from llm_proxy.runtime import compile_runtime

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"providers:\n  - name: vx\n    type: vertex\n    project: p\n"
        f"    credentials_file: {tmp_path}/nope.json\n"
    )
    with pytest.raises(ConfigError, match=r"nope\.json"):
        compile_runtime(load_config(cfg, {}).settings, {}, b"\0" * 32)


def test_round_trip_image_json_on_vertex(vertex: tuple[Any, Any, RunningGateway]) -> None:
    gem, _, gw = vertex
    c = gw.client()
    tool: Any = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    r = c.chat.completions.create(model="vx/gemini-tool", messages=USER, tools=[tool])
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    follow: Any = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r2 = c.chat.completions.create(model="vx/gemini-fake", messages=follow, tools=[tool])
    assert r2.choices[0].message.content == "fake: tool said sunny"
    img: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    assert c.chat.completions.create(model="vx/gemini-fake", messages=img).choices[
        0
    ].message.content == ("fake: see [images: 1]")
    r3 = c.chat.completions.create(
        model="vx/gemini-fake",
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "v", "schema": {"type": "object"}},
        },
    )
    assert json.loads(r3.choices[0].message.content or "") == {"answer": "yes", "confidence": 0.9}
    assert gem.requests[-1].headers["authorization"].startswith("Bearer ya29.")


@pytest.mark.parametrize(
    ("model", "exc", "status"),
    [
        ("gemini-error-404", openai.NotFoundError, 404),
        ("gemini-error-429", openai.RateLimitError, 429),
        ("gemini-context", openai.BadRequestError, 400),
        ("gemini-error-500", openai.InternalServerError, 502),
        ("gemini-error-503", openai.InternalServerError, 503),
    ],
)
def test_errors_on_vertex(
    vertex: tuple[Any, Any, RunningGateway],
    model: str,
    exc: type[openai.APIStatusError],
    status: int,
) -> None:
    _, _, gw = vertex
    with pytest.raises(exc) as e:
        gw.client().chat.completions.create(model=f"vx/{model}", messages=USER)
    assert e.value.status_code == status
    if status == 429:
        assert e.value.response.headers["retry-after"] == "7"
    if model == "gemini-context":
        assert e.value.code == "context_length_exceeded"
