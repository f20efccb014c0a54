"""SigV4 signing for Bedrock, checked over real HTTP by a fake Bedrock runtime that recomputes
the signature, plus the fake's Converse / ConverseStream answers (decoded with botocore)."""

from __future__ import annotations

import base64
import datetime
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from llm_proxy.providers.aws_sigv4 import SigV4Signer, from_env
from tests.fakes.bedrock import KNOWN_ACCESS_KEY, KNOWN_SECRET_KEY, FakeBedrock
from tests.fakes.server import ServerThread

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_HELLO = {"messages": [{"role": "user", "content": [{"text": "hello there"}]}]}
_WEATHER_TOOL = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Weather for a city",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
}


@pytest.fixture(scope="module")
def bedrock_server() -> Iterator[tuple[FakeBedrock, ServerThread]]:
    fake = FakeBedrock()
    server = ServerThread(fake).start()
    yield fake, server
    server.stop()


@pytest.fixture
def fake(bedrock_server: tuple[FakeBedrock, ServerThread]) -> FakeBedrock:
    bedrock_server[0].reset()
    return bedrock_server[0]


@pytest.fixture
def base(bedrock_server: tuple[FakeBedrock, ServerThread]) -> str:
    return bedrock_server[1].url


def _signer(**kw: Any) -> SigV4Signer:
    args: dict[str, Any] = {
        "access_key": KNOWN_ACCESS_KEY,
        "secret_key": KNOWN_SECRET_KEY,
        "session_token": None,
        "region": "us-west-2",
    }
    return SigV4Signer(**{**args, **kw})


def _send(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _call(
    base: str,
    model: str,
    doc: dict[str, Any],
    *,
    stream: bool = False,
    signer: SigV4Signer | None = None,
) -> tuple[int, dict[str, str], bytes]:
    url = f"{base}/model/{model}/{'converse-stream' if stream else 'converse'}"
    body = orjson.dumps(doc)
    headers = (signer or _signer()).sign("POST", url, {"Content-Type": "application/json"}, body)
    return _send(url, headers, body)


def _events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    buf = EventStreamBuffer()
    buf.add_data(raw)
    out = []
    for msg in buf:
        h = msg.headers
        kind = h.get(":event-type") or "!" + h[":exception-type"]
        out.append((kind, json.loads(msg.payload)))
    return out


def _error_type(headers: dict[str, str]) -> str:
    return headers["x-amzn-errortype"].split(":", 1)[0]


# --- signing, verified by the fake ---------------------------------------------------------


def test_signed_request_is_accepted(fake: FakeBedrock, base: str) -> None:
    status, headers, body = _call(base, "fake-bedrock", _HELLO)
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    doc = orjson.loads(body)
    assert doc["output"]["message"] == {
        "role": "assistant",
        "content": [{"text": "fake: hello there"}],
    }
    assert doc["stopReason"] == "end_turn"
    assert doc["usage"] == {"inputTokens": 2, "outputTokens": 3, "totalTokens": 5}
    assert fake.signed_headers == [["content-type", "host", "x-amz-date"]]
    assert fake.regions == ["us-west-2"]
    assert fake.session_tokens == [None]
    auth = fake.requests[0].headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KNOWN_ACCESS_KEY}/")
    assert "/us-west-2/bedrock/aws4_request" in auth


def test_sign_returns_input_plus_auth_headers() -> None:
    given = {"Content-Type": "application/json", "Authorization": "stale"}
    out = _signer(session_token="tok-123").sign(
        "post", "https://h.example/model/m/converse", given, b"{}"
    )
    assert given == {"Content-Type": "application/json", "Authorization": "stale"}  # not mutated
    assert set(out) == {"Content-Type", "Authorization", "X-Amz-Date", "X-Amz-Security-Token"}
    assert out["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDFAKE/")
    assert (
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token," in out["Authorization"]
    )
    assert out["X-Amz-Security-Token"] == "tok-123"
    assert len(out["X-Amz-Date"]) == 16 and out["X-Amz-Date"].endswith("Z")


def test_matches_aws_test_suite_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS's published SigV4 test suite, case get-vanilla (independent of the fake's verifier)."""
    import botocore.auth

    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda: datetime.datetime(2015, 8, 30, 12, 36, 0)
    )
    signer = SigV4Signer(
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None, "us-east-1", "service"
    )
    out = signer.sign("GET", "https://example.amazonaws.com/", {}, b"")
    assert out["X-Amz-Date"] == "20150830T123600Z"
    assert out["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_session_token_is_sent_and_signed(fake: FakeBedrock, base: str) -> None:
    status, _, body = _call(base, "fake-bedrock", _HELLO, signer=_signer(session_token="tok-123"))
    assert status == 200, body
    assert "x-amz-security-token" in fake.signed_headers[0]
    assert fake.session_tokens == ["tok-123"]


def test_model_id_with_escaped_colon_is_signed_as_sent(fake: FakeBedrock, base: str) -> None:
    # Real model ids hold ':' (anthropic.claude-3-haiku-20240307-v1:0); the SDKs send it as %3A
    # and AWS signs the path escaped once more.
    status, _, body = _call(base, "anthropic.claude-3-haiku-20240307-v1%3A0", _HELLO)
    assert status == 200, body
    assert fake.requests[0].path == "/model/anthropic.claude-3-haiku-20240307-v1:0/converse"


def test_tampered_body_is_rejected(fake: FakeBedrock, base: str) -> None:
    url = f"{base}/model/fake-bedrock/converse"
    body = orjson.dumps(_HELLO)
    headers = _signer().sign("POST", url, {"Content-Type": "application/json"}, body)
    status, rheaders, rbody = _send(url, headers, body.replace(b"hello", b"HELLO"))
    assert status == 403
    assert _error_type(rheaders) == "InvalidSignatureException"
    assert rheaders["x-amzn-errortype"].endswith("/com.amazon.coral.service/")
    assert orjson.loads(rbody)["message"].startswith(
        "The request signature we calculated does not match the signature you provided"
    )
    assert fake.signed_headers == []


def test_tampered_signed_header_or_path_is_rejected(base: str) -> None:
    url = f"{base}/model/fake-bedrock/converse"
    body = orjson.dumps(_HELLO)
    headers = _signer().sign("POST", url, {"Content-Type": "application/json"}, body)
    status, rheaders, _ = _send(url, {**headers, "Content-Type": "text/plain"}, body)
    assert (status, _error_type(rheaders)) == (403, "InvalidSignatureException")
    other = f"{base}/model/fake-bedrock-tool/converse"
    status, rheaders, _ = _send(other, headers, body)
    assert (status, _error_type(rheaders)) == (403, "InvalidSignatureException")


def test_wrong_secret_is_rejected(base: str) -> None:
    status, headers, _ = _call(base, "fake-bedrock", _HELLO, signer=_signer(secret_key="nope"))
    assert (status, _error_type(headers)) == (403, "InvalidSignatureException")


def test_unknown_access_key_is_rejected(base: str) -> None:
    status, headers, body = _call(
        base, "fake-bedrock", _HELLO, signer=_signer(access_key="AKIDOTHER")
    )
    assert (status, _error_type(headers)) == (403, "UnrecognizedClientException")
    assert orjson.loads(body)["message"] == "The security token included in the request is invalid."


def test_unsigned_request_is_rejected(base: str) -> None:
    url = f"{base}/model/fake-bedrock/converse"
    status, headers, _ = _send(url, {"Content-Type": "application/json"}, orjson.dumps(_HELLO))
    assert (status, _error_type(headers)) == (403, "MissingAuthenticationTokenException")


def test_stale_signature_is_rejected(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth

    old = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: old)
    status, headers, body = _call(base, "fake-bedrock", _HELLO)
    assert (status, _error_type(headers)) == (403, "InvalidSignatureException")
    assert orjson.loads(body)["message"].startswith("Signature expired")


# --- from_env and repr ---------------------------------------------------------------------


def test_from_env_without_keys_is_none() -> None:
    assert from_env({}, None) is None
    assert from_env({"AWS_ACCESS_KEY_ID": "AKID"}, None) is None
    assert from_env({"AWS_SECRET_ACCESS_KEY": "s"}, "us-east-2") is None
    assert from_env({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "  "}, None) is None


@pytest.mark.parametrize(
    ("env", "region", "expected"),
    [
        ({}, None, "us-east-1"),
        ({"AWS_DEFAULT_REGION": "eu-west-1"}, None, "eu-west-1"),
        ({"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"}, None, "eu-central-1"),
        ({"AWS_REGION": "eu-central-1"}, "ap-south-1", "ap-south-1"),
        ({"AWS_REGION": ""}, None, "us-east-1"),
    ],
)
def test_from_env_region(env: dict[str, str], region: str | None, expected: str) -> None:
    keys = {"AWS_ACCESS_KEY_ID": "AKIDFAKE", "AWS_SECRET_ACCESS_KEY": "fake-secret"}
    signer = from_env({**keys, **env}, region)
    assert signer is not None
    assert (signer.region, signer.service) == (expected, "bedrock")


def test_from_env_signs_with_session_token(fake: FakeBedrock, base: str) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": KNOWN_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": KNOWN_SECRET_KEY,
        "AWS_SESSION_TOKEN": "session-tok",
        "AWS_REGION": "eu-west-3",
    }
    signer = from_env(env, None)
    assert signer is not None
    status, _, body = _call(base, "fake-bedrock", _HELLO, signer=signer)
    assert status == 200, body
    assert fake.regions == ["eu-west-3"]
    assert fake.session_tokens == ["session-tok"]


def test_repr_hides_secrets() -> None:
    signer = _signer(secret_key="very-secret-key", session_token="very-secret-token")
    for text in (repr(signer), str(signer), f"{signer}"):
        assert "very-secret" not in text
        assert KNOWN_ACCESS_KEY not in text
        assert "us-west-2" in text
        assert "<set>" in text
    assert "session_token" not in repr(_signer())


def test_missing_parts_raise_without_values() -> None:
    with pytest.raises(ValueError, match="missing access key id") as info:
        SigV4Signer("", "very-secret-key", "very-secret-token", "us-east-1")
    assert "very-secret" not in str(info.value)
    with pytest.raises(ValueError, match="missing region"):
        SigV4Signer("AKID", "very-secret-key", None, "")


# --- the fake's answers ---------------------------------------------------------------------


def test_images_and_tool_results(base: str) -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    doc = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "what is this"},
                    {"image": {"format": "png", "source": {"bytes": png}}},
                    {"image": {"format": "jpeg", "source": {"bytes": png}}},
                ],
            }
        ]
    }
    status, _, body = _call(base, "fake-bedrock", doc)
    assert status == 200, body
    assert orjson.loads(body)["output"]["message"]["content"] == [
        {"text": "fake: what is this [images: 2]"}
    ]
    use = {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}
    result = {"toolUseId": "t1", "content": [{"text": "sunny"}], "status": "success"}
    doc = {
        "messages": [
            {"role": "user", "content": [{"text": "weather?"}]},
            {"role": "assistant", "content": [{"toolUse": use}]},
            {"role": "user", "content": [{"toolResult": result}]},
        ],
        "toolConfig": {"tools": [_WEATHER_TOOL]},
    }
    status, _, body = _call(base, "fake-bedrock", doc)
    assert status == 200, body
    assert orjson.loads(body)["output"]["message"]["content"] == [{"text": "fake: tool said sunny"}]


def test_tool_scenarios(base: str) -> None:
    doc = {**_HELLO, "toolConfig": {"tools": [_WEATHER_TOOL]}}
    status, _, body = _call(base, "fake-bedrock-tool", doc)
    assert status == 200, body
    out = orjson.loads(body)
    assert out["stopReason"] == "tool_use"
    text, use = out["output"]["message"]["content"]
    assert text == {"text": "Let me check."}
    assert use["toolUse"]["name"] == "get_weather"
    assert use["toolUse"]["input"] == {"city": "Paris", "unit": "c"}
    forced = {"tools": [_WEATHER_TOOL], "toolChoice": {"tool": {"name": "get_weather"}}}
    status, _, body = _call(base, "fake-bedrock", {**_HELLO, "toolConfig": forced})
    (block,) = orjson.loads(body)["output"]["message"]["content"]
    assert block["toolUse"]["input"] == {"answer": "yes", "confidence": 0.9}


def test_text_stream(base: str) -> None:
    status, headers, raw = _call(base, "fake-bedrock", _HELLO, stream=True)
    assert status == 200
    assert headers["content-type"] == "application/vnd.amazon.eventstream"
    events = _events(raw)
    kinds = [k for k, _ in events]
    assert kinds == ["messageStart"] + ["contentBlockDelta"] * 3 + [
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert "".join(p["delta"]["text"] for k, p in events if k == "contentBlockDelta") == (
        "fake: hello there"
    )
    assert events[-2][1] == {"stopReason": "end_turn"}
    assert events[-1][1]["usage"] == {"inputTokens": 2, "outputTokens": 3, "totalTokens": 5}


def test_tool_stream(base: str) -> None:
    doc = {**_HELLO, "toolConfig": {"tools": [_WEATHER_TOOL]}}
    status, _, raw = _call(base, "fake-bedrock-tool", doc, stream=True)
    assert status == 200
    events = _events(raw)
    starts = [p for k, p in events if k == "contentBlockStart"]
    assert starts == [
        {
            "contentBlockIndex": 1,
            "start": {"toolUse": {"toolUseId": "tooluse_fake0001", "name": "get_weather"}},
        }
    ]
    pieces = [
        p["delta"]["toolUse"]["input"]
        for k, p in events
        if k == "contentBlockDelta" and p["contentBlockIndex"] == 1
    ]
    assert len(pieces) == 3
    assert json.loads("".join(pieces)) == {"city": "Paris", "unit": "c"}
    assert ("messageStop", {"stopReason": "tool_use"}) in events


def test_truncated_and_midstream_error_streams(base: str) -> None:
    _, _, raw = _call(base, "fake-bedrock-truncate", _HELLO, stream=True)
    assert [k for k, _ in _events(raw)] == ["messageStart", "contentBlockDelta"]
    _, _, raw = _call(base, "fake-bedrock-midstream-error", _HELLO, stream=True)
    events = _events(raw)
    assert [k for k, _ in events] == ["messageStart", "contentBlockDelta", "!throttlingException"]


@pytest.mark.parametrize(
    ("status", "etype"),
    [
        (400, "ValidationException"),
        (403, "AccessDeniedException"),
        (404, "ResourceNotFoundException"),
        (429, "ThrottlingException"),
        (500, "InternalServerException"),
        (503, "ServiceUnavailableException"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_error_scenarios(base: str, status: int, etype: str, stream: bool) -> None:
    got, headers, body = _call(base, f"fake-bedrock-error-{status}", _HELLO, stream=stream)
    assert (got, _error_type(headers)) == (status, etype)
    assert orjson.loads(body)["message"]
    if status == 429:
        assert orjson.loads(body)["message"].startswith("Too many requests")


def test_context_scenario(base: str) -> None:
    status, headers, body = _call(base, "fake-bedrock-context", _HELLO)
    assert (status, _error_type(headers)) == (400, "ValidationException")
    assert orjson.loads(body) == {"message": "Input is too long for requested model."}


@pytest.mark.parametrize(
    "doc",
    [
        {"messages": []},
        {"messages": [{"role": "system", "content": [{"text": "x"}]}]},
        {"messages": [{"role": "assistant", "content": [{"text": "x"}]}]},
        {
            "messages": [
                {"role": "user", "content": [{"text": "a"}]},
                {"role": "user", "content": [{"text": "b"}]},
            ]
        },
        {"messages": [{"role": "user", "content": []}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
        {
            "messages": [
                {"role": "user", "content": [{"image": {"format": "bmp", "source": {"bytes": ""}}}]}
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": []}}]}
            ]
        },
        {**_HELLO, "inferenceConfig": {"maxTokens": 0}},
    ],
)
def test_invalid_bodies_are_rejected(base: str, doc: dict[str, Any]) -> None:
    status, headers, _ = _call(base, "fake-bedrock", doc)
    assert (status, _error_type(headers)) == (400, "ValidationException")
