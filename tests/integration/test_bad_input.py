"""Hostile and malformed input over real HTTP: every failure is an OpenAI-shaped JSON error with
the right status, type, code and param, and the gateway stays healthy after each one.

Raw sockets where the HTTP itself is the bad input (the head, framing, trickling); http.client
and the openai SDK elsewhere.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from llm_proxy.app import build_app, create_gateway
from llm_proxy.server import GatewayHttpProtocol
from tests.conftest import (
    MASTER_KEY,
    UPSTREAM_KEY,
    GatewayFactory,
    RunningGateway,
    default_config,
)
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import ServerThread

CHAT = "/v1/chat/completions"
MIB = 1024 * 1024
USER = [{"role": "user", "content": "hello there"}]
ECHO: dict[str, Any] = {"model": "mock/echo", "messages": USER}
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
_UNSET: Any = object()


@dataclass
class Resp:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> Iterator[RunningGateway]:
    """One default gateway for the whole module: it has to survive every case in turn."""
    path = tmp_path_factory.mktemp("bad_input") / "config.yaml"
    path.write_text(default_config(fake_upstream[1]))
    env = {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY, "LLM_PROXY_DATA_DIR": str(path.parent / "data")}
    server = ServerThread(
        build_app(gateway := create_gateway(str(path), env)), http=GatewayHttpProtocol
    ).start()
    yield RunningGateway(gw=gateway, server=server, config_path=path)
    server.stop()


# ---------------------------------------------------------------- HTTP helpers


def _read(resp: http.client.HTTPResponse) -> Resp:
    body = resp.read()
    return Resp(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)


def request(
    gw: RunningGateway,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    key: str | None = MASTER_KEY,
    chunked: bool = False,
    timeout: float = 20,
) -> Resp:
    conn = http.client.HTTPConnection("127.0.0.1", gw.server.port, timeout=timeout)
    try:
        h: dict[str, str] = {}
        if body is not None:
            h["Content-Type"] = "application/json"
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h, encode_chunked=chunked)
        return _read(conn.getresponse())
    finally:
        conn.close()


def post_chat(gw: RunningGateway, payload: Any, **kw: Any) -> Resp:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(gw, "POST", CHAT, raw, **kw)


def connect(gw: RunningGateway, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.server.port), timeout=timeout)


def read_response(sock: socket.socket) -> Resp:
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return _read(resp)


def head(
    gw: RunningGateway,
    extra: list[tuple[str, str]] | None = None,
    *,
    method: str = "POST",
    path: str = CHAT,
) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{gw.server.port}",
        f"Authorization: Bearer {MASTER_KEY}",
        "Content-Type: application/json",
    ]
    lines += [f"{k}: {v}" for k, v in extra or ()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw_exchange(gw: RunningGateway, data: bytes, timeout: float = 10) -> Resp:
    with connect(gw, timeout) as sock:
        # The gateway may answer and close before it has read everything.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        return read_response(sock)


def readable(sock: socket.socket, wait: float = 0) -> bool:
    return bool(select.select([sock], [], [], wait)[0])


def _closed_by_peer(sock: socket.socket, wait: float = 3) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# ---------------------------------------------------------------- assertions


def assert_no_leak(r: Resp) -> None:
    assert UPSTREAM_KEY.encode() not in r.body
    for k, v in r.headers.items():
        assert UPSTREAM_KEY not in k and UPSTREAM_KEY not in v


def assert_request_id(r: Resp) -> str:
    rid = r.headers.get("x-request-id")
    assert rid, f"no x-request-id on a {r.status} response: {r.headers}"
    return rid


def assert_error(
    r: Resp, status: int, etype: str, code: str | None, param: Any = _UNSET
) -> dict[str, Any]:
    assert r.status == status, (r.status, r.body[:500])
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    doc = json.loads(r.body)
    assert isinstance(doc, dict) and list(doc) == ["error"], doc
    err = doc["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"], err
    assert err["type"] == etype, err
    assert err["code"] == code, err
    if param is not _UNSET:
        assert err["param"] == param, err
    assert_request_id(r)
    assert_no_leak(r)
    return err


def assert_invalid(r: Resp, code: str, param: Any = _UNSET) -> dict[str, Any]:
    return assert_error(r, 400, "invalid_request_error", code, param)


def assert_healthy(gw: RunningGateway) -> None:
    r = request(gw, "GET", "/health", key=None, timeout=5)
    assert r.status == 200, (r.status, r.body)
    assert r.json()["status"] == "healthy"


def assert_echo(r: Resp, text: str, model: str = "mock/echo") -> None:
    assert r.status == 200, (r.status, r.body[:500])
    doc = r.json()
    assert doc["object"] == "chat.completion"
    assert doc["model"] == model
    assert doc["choices"][0]["message"]["content"] == text
    assert_request_id(r)
    assert_no_leak(r)


def chat(**fields: Any) -> dict[str, Any]:
    return {**ECHO, **fields}


# ---------------------------------------------------------------- invalid JSON

_VALID = b'{"model":"mock/echo","messages":[{"role":"user","content":"hi"}]'
DEEP = 100_000

INVALID_JSON = {
    "nan": _VALID + b',"temperature":NaN}',
    "infinity": _VALID + b',"temperature":Infinity}',
    "minus_infinity": _VALID + b',"temperature":-Infinity}',
    "number_overflows_double": _VALID + b',"temperature":1e400}',
    "invalid_utf8": b'{"model":"mock/echo","messages":[{"role":"user","content":"\xff\xfe\xc3"}]}',
    "lone_surrogate_escape": b'{"model":"mock/echo","messages":[{"role":"user",'
    b'"content":"\\ud800"}]}',
    "utf8_bom": b"\xef\xbb\xbf" + _VALID + b"}",
    "deep_arrays": b"[" * DEEP + b"]" * DEEP,
    "deep_objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep_inside_request": _VALID + b',"metadata":{"x":' + b"[" * DEEP + b"]" * DEEP + b"}}",
    "truncated": b'{"model":"mock/echo","messages":[{"role":"us',
    "trailing_comma": _VALID + b",}",
    "trailing_garbage": _VALID + b"}xyz",
    "single_quotes": b"{'model':'mock/echo'}",
    "whitespace_only": b" \r\n\t ",
    "empty": b"",
}


@pytest.mark.parametrize("raw", INVALID_JSON.values(), ids=INVALID_JSON.keys())
def test_invalid_json_is_400(gw: RunningGateway, raw: bytes) -> None:
    assert_invalid(post_chat(gw, raw), "invalid_json", None)
    assert_healthy(gw)


@pytest.mark.parametrize("depth", [255, 300, 1000])
def test_nesting_that_parses_but_cannot_be_forwarded_is_400(gw: RunningGateway, depth: int) -> None:
    """Depths the JSON parser accepts but the serializer refuses must not become a 500."""
    raw = _VALID + b',"metadata":{"x":' + b"[" * depth + b"]" * depth + b"}}"
    assert_invalid(post_chat(gw, raw), "invalid_json", None)
    assert_healthy(gw)


def test_moderate_nesting_is_accepted(gw: RunningGateway) -> None:
    raw = _VALID + b',"metadata":{"x":' + b"[" * 100 + b"]" * 100 + b"}}"
    assert_echo(post_chat(gw, raw), "hi")


NOT_OBJECTS = {
    "array": b"[]",
    "array_of_request": b"[" + _VALID + b"}]",
    "string": b'"hello"',
    "number": b"42",
    "float": b"-1.5e3",
    "true": b"true",
    "null": b"null",
}


@pytest.mark.parametrize("raw", NOT_OBJECTS.values(), ids=NOT_OBJECTS.keys())
def test_json_that_is_not_an_object_is_400(gw: RunningGateway, raw: bytes) -> None:
    assert_invalid(post_chat(gw, raw), "invalid_type", None)
    assert_healthy(gw)


# ---------------------------------------------------------------- wrong types and values

BAD_FIELDS: list[tuple[str, dict[str, Any], str, str]] = [
    # (case id, body, expected param, expected code)
    ("model_number", {"model": 42, "messages": USER}, "model", "invalid_type"),
    ("model_list", {"model": ["mock/echo"], "messages": USER}, "model", "invalid_type"),
    ("model_empty", {"model": "", "messages": USER}, "model", "invalid_value"),
    ("model_too_long", {"model": "m" * 300, "messages": USER}, "model", "invalid_value"),
    (
        "messages_object",
        chat(messages={"role": "user", "content": "x"}),
        "messages",
        "invalid_type",
    ),
    ("messages_string", chat(messages="hi"), "messages", "invalid_type"),
    ("message_string", chat(messages=["hi"]), "messages[0]", "invalid_type"),
    ("message_null", chat(messages=[None]), "messages[0]", "invalid_type"),
    ("second_message_list", chat(messages=[*USER, []]), "messages[1]", "invalid_type"),
    (
        "role_unknown",
        chat(messages=[{"role": "wizard", "content": "x"}]),
        "messages[0].role",
        "invalid_value",
    ),
    (
        "role_wrong_case",
        chat(messages=[{"role": "User", "content": "x"}]),
        "messages[0].role",
        "invalid_value",
    ),
    (
        "role_missing",
        chat(messages=[{"content": "x"}]),
        "messages[0].role",
        "missing_required_parameter",
    ),
    (
        "role_number",
        chat(messages=[{"role": 1, "content": "x"}]),
        "messages[0].role",
        "invalid_type",
    ),
    (
        "role_list",
        chat(messages=[{"role": ["user"], "content": "x"}]),
        "messages[0].role",
        "invalid_type",
    ),
    (
        "role_object",
        chat(messages=[{"role": {"a": 1}, "content": "x"}]),
        "messages[0].role",
        "invalid_type",
    ),
    (
        "content_number",
        chat(messages=[{"role": "user", "content": 42}]),
        "messages[0].content",
        "invalid_type",
    ),
    (
        "content_object",
        chat(messages=[{"role": "user", "content": {"text": "x"}}]),
        "messages[0].content",
        "invalid_type",
    ),
    (
        "content_part_string",
        chat(messages=[{"role": "user", "content": ["x"]}]),
        "messages[0].content[0]",
        "invalid_type",
    ),
    (
        "content_part_no_type",
        chat(messages=[{"role": "user", "content": [{"text": "x"}]}]),
        "messages[0].content[0]",
        "invalid_type",
    ),
    (
        "user_content_null",
        chat(messages=[{"role": "user", "content": None}]),
        "messages[0].content",
        "invalid_value",
    ),
    (
        "user_content_empty_parts",
        chat(messages=[{"role": "user", "content": []}]),
        "messages[0].content",
        "invalid_value",
    ),
    (
        "assistant_no_content_no_tools",
        chat(messages=[*USER, {"role": "assistant"}]),
        "messages[1].content",
        "invalid_value",
    ),
    (
        "tool_without_call_id",
        chat(messages=[*USER, {"role": "tool", "content": "x"}]),
        "messages[1].tool_call_id",
        "missing_required_parameter",
    ),
    (
        "tool_calls_not_list",
        chat(messages=[*USER, {"role": "assistant", "content": None, "tool_calls": "x"}]),
        "messages[1].tool_calls",
        "invalid_type",
    ),
    ("temperature_string", chat(temperature="hot"), "temperature", "invalid_type"),
    ("temperature_bool", chat(temperature=True), "temperature", "invalid_type"),
    ("top_p_list", chat(top_p=[1]), "top_p", "invalid_type"),
    ("max_tokens_float", chat(max_tokens=1.5), "max_tokens", "invalid_type"),
    ("max_tokens_string", chat(max_tokens="10"), "max_tokens", "invalid_type"),
    (
        "max_completion_tokens_bool",
        chat(max_completion_tokens=False),
        "max_completion_tokens",
        "invalid_type",
    ),
    ("n_bool", chat(n=True), "n", "invalid_type"),
    ("seed_float", chat(seed=1.5), "seed", "invalid_type"),
    ("stream_string", chat(stream="yes"), "stream", "invalid_type"),
    ("stream_number", chat(stream=1), "stream", "invalid_type"),
    ("logprobs_string", chat(logprobs="true"), "logprobs", "invalid_type"),
    ("stop_five", chat(stop=["a", "b", "c", "d", "e"]), "stop", "invalid_value"),
    ("stop_number", chat(stop=5), "stop", "invalid_value"),
    ("stop_list_of_numbers", chat(stop=[1, 2]), "stop", "invalid_value"),
    ("tools_object", chat(tools={"type": "function"}), "tools", "invalid_type"),
    ("tools_string", chat(tools="get_weather"), "tools", "invalid_type"),
    ("tool_string", chat(tools=["get_weather"]), "tools[0]", "invalid_type"),
    (
        "tool_no_function_name",
        chat(tools=[{"type": "function", "function": {}}]),
        "tools[0].function.name",
        "missing_required_parameter",
    ),
    ("tool_choice_sometimes", chat(tool_choice="sometimes"), "tool_choice", "invalid_value"),
    ("tool_choice_number", chat(tool_choice=1), "tool_choice", "invalid_value"),
    ("response_format_string", chat(response_format="json"), "response_format", "invalid_type"),
    ("logit_bias_list", chat(logit_bias=[1]), "logit_bias", "invalid_type"),
    ("metadata_string", chat(metadata="x"), "metadata", "invalid_type"),
    (
        "stream_options_string",
        chat(stream=True, stream_options="usage"),
        "stream_options",
        "invalid_type",
    ),
    ("user_number", chat(user=7), "user", "invalid_type"),
]


@pytest.mark.parametrize(
    ("body", "param", "code"), [c[1:] for c in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS]
)
def test_wrong_types_and_values_name_the_param(
    gw: RunningGateway, body: dict[str, Any], param: str, code: str
) -> None:
    err = assert_invalid(post_chat(gw, body), code, param)
    assert param.split("[")[0].split(".")[0] in err["message"]
    assert_healthy(gw)


OUT_OF_RANGE: list[tuple[str, Any]] = [
    ("temperature", 3),
    ("temperature", 2.0001),
    ("temperature", -0.1),
    ("top_p", -0.1),
    ("top_p", 1.5),
    ("n", 0),
    ("n", 129),
    ("max_tokens", 0),
    ("max_tokens", -1),
    ("max_tokens", 2**31),
    ("max_completion_tokens", 0),
    ("presence_penalty", 5),
    ("presence_penalty", -2.5),
    ("frequency_penalty", -3),
    ("top_logprobs", 21),
    ("top_logprobs", -1),
    ("seed", 2**63),
]


@pytest.mark.parametrize(("name", "value"), OUT_OF_RANGE, ids=[f"{n}={v}" for n, v in OUT_OF_RANGE])
def test_out_of_range_is_400(gw: RunningGateway, name: str, value: Any) -> None:
    assert_invalid(post_chat(gw, chat(**{name: value})), "invalid_value", name)
    assert_healthy(gw)


MISSING: list[tuple[str, dict[str, Any], str, str]] = [
    ("no_model", {"messages": USER}, "model", "missing_required_parameter"),
    ("null_model", {"model": None, "messages": USER}, "model", "missing_required_parameter"),
    ("no_messages", {"model": "mock/echo"}, "messages", "missing_required_parameter"),
    (
        "null_messages",
        {"model": "mock/echo", "messages": None},
        "messages",
        "missing_required_parameter",
    ),
    ("empty_messages", {"model": "mock/echo", "messages": []}, "messages", "empty_array"),
    ("empty_object", {}, "model", "missing_required_parameter"),
]


@pytest.mark.parametrize(
    ("body", "param", "code"), [c[1:] for c in MISSING], ids=[c[0] for c in MISSING]
)
def test_missing_required_is_400(
    gw: RunningGateway, body: dict[str, Any], param: str, code: str
) -> None:
    assert_invalid(post_chat(gw, body), code, param)
    assert_healthy(gw)


@pytest.mark.parametrize("stream", [None, False])
def test_stream_options_without_stream_is_400(gw: RunningGateway, stream: Any) -> None:
    body = chat(stream_options={"include_usage": True})
    if stream is not None:
        body["stream"] = stream
    assert_invalid(post_chat(gw, body), "invalid_value", "stream_options")
    assert_healthy(gw)


def test_stream_request_errors_are_json_not_sse(gw: RunningGateway) -> None:
    """A request that fails before the stream starts gets a JSON error, not an event stream."""
    assert_invalid(post_chat(gw, chat(stream=True, temperature=9)), "invalid_value", "temperature")
    assert_error(
        post_chat(gw, chat(stream=True, model="nope/nothing")),
        404,
        "invalid_request_error",
        "model_not_found",
        "model",
    )


def test_bad_mock_extension_fields_are_not_500(gw: RunningGateway) -> None:
    """mock_tokens / mock_delay_ms of the wrong type: a client error, never a crash."""
    for extra in ({"mock_tokens": "abc"}, {"mock_tokens": [3]}, {"mock_delay_ms": "soon"}):
        body = {"model": "mock/lorem", "messages": USER, "stream": True, **extra}
        r = post_chat(gw, body)
        assert r.status == 400, (extra, r.status, r.body[:300])
        assert_invalid(r, r.json()["error"]["code"])
    assert_healthy(gw)


# ---------------------------------------------------------------- valid requests pass


def test_valid_edge_requests_are_accepted(gw: RunningGateway) -> None:
    client = gw.client()
    tool_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    cases: list[tuple[list[dict[str, Any]], str, dict[str, Any]]] = [
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look at"},
                        {
                            "type": "image_url",
                            "image_url": {
                                "url": "data:image/png;base64,iVBORw0KGgo=",
                                "detail": "low",
                            },
                        },
                        {"type": "text", "text": "this"},
                    ],
                }
            ],
            "look at this",
            {},
        ),
        (
            [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "dev"}],
            "dev",
            {},
        ),
        (
            [
                {"role": "system", "content": [{"type": "text", "text": "sys"}]},
                {"role": "user", "content": "parts system"},
            ],
            "parts system",
            {},
        ),
        (
            [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [tool_call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
            ],
            "weather?",
            {"tools": tools, "tool_choice": "auto"},
        ),
        (
            [
                {"role": "user", "content": "tool parts"},
                {"role": "assistant", "content": None, "tool_calls": [tool_call]},
                {
                    "role": "tool",
                    "tool_call_id": "call_1",
                    "content": [{"type": "text", "text": "1"}],
                },
                {"role": "assistant", "content": "It is 22C."},
            ],
            "tool parts",
            {},
        ),
        (
            [{"role": "user", "content": "prefill"}, {"role": "assistant", "content": "Sure,"}],
            "prefill",
            {},
        ),
        (
            [
                {"role": "user", "content": "refused"},
                {"role": "assistant", "content": None, "refusal": "no"},
            ],
            "refused",
            {},
        ),
        ([{"role": "user", "content": "", "name": "bob"}], "", {}),
        (
            [{"role": "user", "content": "bounds"}],
            "bounds",
            {
                "temperature": 2,
                "top_p": 0,
                "n": 1,
                "max_tokens": 2**31 - 1,
                "presence_penalty": -2,
                "frequency_penalty": 2,
                "logprobs": True,
                "top_logprobs": 20,
                "stop": ["a", "b", "c", "d"],
                "seed": -(2**63),
                "response_format": {"type": "json_object"},
                "user": "u1",
                "logit_bias": {"50256": -100},
                "metadata": {"k": "v"},
                "store": False,
                "parallel_tool_calls": True,
                "tools": tools,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "reasoning_effort": "low",
                "some_future_field": {"x": [1, 2]},
            },
        ),
        (
            [{"role": "user", "content": "nulls"}],
            "nulls",
            {
                "temperature": None,
                "max_tokens": None,
                "stop": None,
                "stream": None,
                "tools": None,
                "stream_options": None,
            },
        ),
    ]
    for messages, text, extra in cases:
        r = client.chat.completions.create(
            model="mock/echo",
            messages=messages,
            extra_body=extra or None,  # type: ignore[arg-type]
        )
        assert r.choices[0].message.content == text, (messages, r)
    # The same shapes relayed to a real (fake) OpenAI upstream.
    for messages, text, _ in cases[:7]:
        r = client.chat.completions.create(model="gpt-test", messages=messages)  # type: ignore[arg-type]
        assert r.choices[0].message.content == f"fake: {text}"
    # A stream with stream_options.
    stream = client.chat.completions.create(
        model="mock/echo",
        messages=[{"role": "user", "content": "a b c"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c"
    assert chunks[-1].usage is not None
    assert_healthy(gw)


# ---------------------------------------------------------------- model and auth


def test_unknown_model_is_404(gw: RunningGateway) -> None:
    for model in ("no-such-model", "gpt-test-2", "nope/x", "a" * 256):
        assert_error(
            post_chat(gw, chat(model=model)),
            404,
            "invalid_request_error",
            "model_not_found",
            "model",
        )
    assert_healthy(gw)


def test_unknown_mock_model_is_404_like_openai(gw: RunningGateway) -> None:
    """The mock provider's 404 must look like OpenAI's (and the gateway's own) model_not_found."""
    for stream in (False, True):
        body = chat(model="mock/no-such-model", stream=stream)
        assert_error(post_chat(gw, body), 404, "invalid_request_error", "model_not_found")
    assert_healthy(gw)


def test_openai_sdk_sees_typed_errors(gw: RunningGateway) -> None:
    client = gw.client()
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="no-such-model", messages=USER)  # type: ignore[arg-type]
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as br:
        client.chat.completions.create(
            model="mock/echo",
            messages=USER,
            temperature=3,  # type: ignore[arg-type]
        )
    assert br.value.code == "invalid_value"
    assert br.value.param == "temperature"


def _auth(gw: RunningGateway, headers: dict[str, str]) -> Resp:
    return post_chat(gw, ECHO, key=None, headers=headers)


def test_missing_or_wrong_key_is_401(gw: RunningGateway) -> None:
    basic = base64.b64encode(f"user:{MASTER_KEY}".encode()).decode()
    bad = [
        {},
        {"Authorization": "Bearer sk-wrong"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": f"Basic {basic}"},
        {"Authorization": f"Basic {MASTER_KEY}"},
        {"Authorization": MASTER_KEY},
        {"Authorization": f"Token {MASTER_KEY}"},
        {"Authorization": f"Bearer {MASTER_KEY}x"},
        {"Authorization": f"Bearer {MASTER_KEY[:-1]}"},
        {"Authorization": "Bearer " + "k" * 10_000},
        {"X-API-Key": "sk-wrong"},
        {"api-key": "sk-wrong"},
        {"X-API-Key": ""},
    ]
    for headers in bad:
        assert_error(_auth(gw, headers), 401, "authentication_error", "invalid_api_key", None)
    # Non-ASCII bytes in the credential header (latin-1 on the wire).
    raw = head(gw).replace(f"Bearer {MASTER_KEY}".encode(), b"Bearer \xff\xfek")
    raw = raw.replace(b"\r\n\r\n", b"\r\nContent-Length: 2\r\n\r\n{}")
    assert_error(raw_exchange(gw, raw), 401, "authentication_error", "invalid_api_key")
    # Every other path needs the key too (not just the chat endpoint).
    for method, path in (("GET", "/v1/models"), ("GET", "/nope"), ("GET", CHAT)):
        assert_error(
            request(gw, method, path, key=None), 401, "authentication_error", "invalid_api_key"
        )
    assert_healthy(gw)


def test_key_accepted_in_each_header(gw: RunningGateway) -> None:
    for headers in (
        {"Authorization": f"Bearer {MASTER_KEY}"},
        {"Authorization": f"bearer {MASTER_KEY}"},
        {"X-API-Key": MASTER_KEY},
        {"api-key": MASTER_KEY},
    ):
        assert_echo(_auth(gw, headers), "hello there")


# ---------------------------------------------------------------- body size


def test_declared_20mb_body_is_413_without_reading_it(gw: RunningGateway) -> None:
    with connect(gw) as sock:
        sock.sendall(head(gw, [("Content-Length", str(20 * MIB))]) + b'{"model":')
        t0 = time.monotonic()
        r = read_response(sock)
        assert time.monotonic() - t0 < 2
    assert_error(r, 413, "invalid_request_error", "request_too_large", None)
    assert_healthy(gw)


def test_expect_continue_with_oversized_body_gets_413_not_100(gw: RunningGateway) -> None:
    extra = [("Content-Length", str(20 * MIB)), ("Expect", "100-continue")]
    with connect(gw) as sock:
        sock.sendall(head(gw, extra))
        first = sock.recv(64)
        assert first.startswith(b"HTTP/1.1 413 "), first
    assert_healthy(gw)


def test_full_20mb_body_is_413(gw: RunningGateway) -> None:
    body = b'{"model":"mock/echo","messages":[{"role":"user","content":"' + b"a" * (20 * MIB)
    body += b'"}]}'
    assert_error(
        post_chat(gw, body, timeout=60), 413, "invalid_request_error", "request_too_large", None
    )
    assert_healthy(gw)


def _chunks(total: int, size: int = MIB) -> Iterator[bytes]:
    yield b'{"model":"mock/echo","messages":[{"role":"user","content":"'
    sent = 0
    while sent < total:
        yield b"a" * size
        sent += size
    yield b'"}]}'


def test_chunked_body_is_cut_off_at_the_limit(gw: RunningGateway) -> None:
    """Chunked: the 413 arrives once max_request_bytes (10 MiB) is passed, body unfinished."""
    with connect(gw) as sock:
        sock.sendall(head(gw, [("Transfer-Encoding", "chunked")]))
        sent = 0
        for chunk in _chunks(11 * MIB):
            if readable(sock):
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            if sent > 11 * MIB:
                break  # never send the terminating chunk
        r = read_response(sock)
    assert_error(r, 413, "invalid_request_error", "request_too_large", None)
    assert_healthy(gw)


def test_full_chunked_20mb_body_is_413(gw: RunningGateway) -> None:
    r = request(
        gw,
        "POST",
        CHAT,
        _chunks(20 * MIB),
        {"Transfer-Encoding": "chunked"},
        chunked=True,
        timeout=60,
    )
    assert_error(r, 413, "invalid_request_error", "request_too_large", None)
    assert_healthy(gw)


def test_small_configured_max_request_bytes(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    gw = gateway_factory(default_config(fake_upstream[1], "max_request_bytes: 1024\n"))
    small = chat(messages=[{"role": "user", "content": "x" * 500}])
    big = chat(messages=[{"role": "user", "content": "x" * 1100}])
    assert_echo(post_chat(gw, small), "x" * 500)
    assert_error(post_chat(gw, big), 413, "invalid_request_error", "request_too_large", None)
    raw = json.dumps(big).encode()
    chunked = request(
        gw,
        "POST",
        CHAT,
        iter([raw[:600], raw[600:]]),
        {"Transfer-Encoding": "chunked"},
        chunked=True,
    )
    assert_error(chunked, 413, "invalid_request_error", "request_too_large", None)
    raw_small = json.dumps(small).encode()
    ok = request(
        gw,
        "POST",
        CHAT,
        iter([raw_small[:100], raw_small[100:]]),
        {"Transfer-Encoding": "chunked"},
        chunked=True,
    )
    assert_echo(ok, "x" * 500)
    assert_healthy(gw)


# ---------------------------------------------------------------- the HTTP head


def test_one_huge_header_is_431(gw: RunningGateway) -> None:
    r = raw_exchange(gw, head(gw, [("X-Big", "a" * 100_000)]))
    assert_error(r, 431, "invalid_request_error", "request_header_too_large", None)
    assert r.headers.get("connection") == "close"
    assert_healthy(gw)


def test_many_headers_over_64kb_is_431(gw: RunningGateway) -> None:
    extra = [(f"X-H{i}", "v" * 40) for i in range(2000)]  # ~ 90 KB
    r = raw_exchange(gw, head(gw, extra))
    assert_error(r, 431, "invalid_request_error", "request_header_too_large", None)
    assert_healthy(gw)


def test_huge_url_is_431(gw: RunningGateway) -> None:
    r = raw_exchange(gw, head(gw, path=CHAT + "?q=" + "a" * 100_000))
    assert_error(r, 431, "invalid_request_error", "request_header_too_large", None)
    assert_healthy(gw)


def test_unterminated_header_is_cut_off(gw: RunningGateway) -> None:
    """A header value that never ends must not be buffered without bound: 431 before it ends."""
    with connect(gw) as sock:
        sock.sendall(head(gw).removesuffix(b"\r\n") + b"X-Endless: ")
        got = False
        for _ in range(64):  # up to 4 MiB, never a line end
            if readable(sock):
                got = True
                break
            try:
                sock.sendall(b"a" * (64 * 1024))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.002)
        assert got or readable(sock, 2), "no answer to a 4 MiB header"
        r = read_response(sock)
    assert_error(r, 431, "invalid_request_error", "request_header_too_large", None)
    assert_healthy(gw)


def test_large_but_allowed_head_is_served(gw: RunningGateway) -> None:
    body = json.dumps(ECHO).encode()
    extra = [("X-Big", "a" * 50_000), ("Content-Length", str(len(body)))]
    r = raw_exchange(gw, head(gw, extra) + body)
    assert_echo(r, "hello there")


MALFORMED = {
    "garbage_line": b"GARBAGE\r\n\r\n",
    "binary": b"\x00\x01\x02\x03\xff\r\n\r\n",
    "tls_client_hello": bytes.fromhex("16030100a5010000a10303") + b"\x00" * 64,
    "bad_version": b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
    "lf_only": b"GET /health HTTP/1.1\nHost: x\n\n",
    "header_without_colon": b"GET /health HTTP/1.1\r\nHost: x\r\nBadHeader\r\n\r\n",
    "space_before_colon": b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n",
    "control_char_in_path": b"GET /hea\x01lth HTTP/1.1\r\nHost: x\r\n\r\n",
    "content_length_abc": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: abc\r\n\r\n",
    "content_length_negative": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: -1\r\n\r\n",
    "duplicate_content_length": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n{}",
    "content_length_and_chunked": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_http_is_json_400(gw: RunningGateway, raw: bytes) -> None:
    with connect(gw) as sock:
        sock.sendall(raw)
        r = read_response(sock)
        assert _closed_by_peer(sock)
    assert_error(r, 400, "invalid_request_error", "invalid_http", None)
    assert_healthy(gw)


def test_malformed_chunk_framing_after_the_head(gw: RunningGateway) -> None:
    """The head was fine (the app already started), then the chunked framing breaks."""
    with connect(gw) as sock:
        sock.sendall(head(gw, [("Transfer-Encoding", "chunked")]) + b"zz\r\nxx\r\n")
        r = read_response(sock)
        assert _closed_by_peer(sock)
    assert_error(r, 400, "invalid_request_error", "invalid_http", None)
    assert_healthy(gw)


def test_garbage_pipelined_behind_a_stream_is_not_spliced_into_it(gw: RunningGateway) -> None:
    """Malformed bytes arriving mid-response end the connection; no 400 lands inside the body."""
    body = json.dumps(
        {
            "model": "mock/lorem",
            "messages": USER,
            "stream": True,
            "mock_tokens": 4,
            "mock_delay_ms": 100,
        }
    ).encode()
    with connect(gw) as sock:
        sock.sendall(head(gw, [("Content-Length", str(len(body)))]) + body)
        got = sock.recv(65536)
        assert got.startswith(b"HTTP/1.1 200 "), got
        sock.sendall(b"GARBAGE\r\n\r\n")
        sock.settimeout(5)
        while chunk := sock.recv(65536):
            got += chunk
    assert got.count(b"HTTP/1.1 ") == 1, got
    assert b"invalid_http" not in got
    assert_healthy(gw)


# ---------------------------------------------------------------- slow and vanishing clients


def test_trickling_body_is_408(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    gw = gateway_factory(default_config(fake_upstream[1], "body_read_timeout: 1\n"))
    with connect(gw) as sock:
        sock.sendall(head(gw, [("Content-Length", "1000")]))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5 and not readable(sock, 0.2):
            sock.sendall(b'{"a":')
        elapsed = time.monotonic() - t0
        r = read_response(sock)
    assert 0.9 <= elapsed <= 2.0, elapsed
    assert_error(r, 408, "invalid_request_error", "request_timeout", None)
    assert_healthy(gw)
    assert_echo(post_chat(gw, ECHO), "hello there")  # normal clients are unaffected


def test_silent_body_is_408(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    gw = gateway_factory(default_config(fake_upstream[1], "body_read_timeout: 1\n"))
    with connect(gw) as sock:
        sock.sendall(head(gw, [("Transfer-Encoding", "chunked")]))
        t0 = time.monotonic()
        r = read_response(sock)
        elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed <= 2.0, elapsed
    assert_error(r, 408, "invalid_request_error", "request_timeout", None)
    assert_healthy(gw)


def test_client_vanishing_mid_body(gw: RunningGateway) -> None:
    for _ in range(20):
        with connect(gw) as sock:
            sock.sendall(head(gw, [("Content-Length", "1000")]) + b'{"model":"mo')
    with connect(gw) as sock:  # and one that resets the connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(head(gw, [("Content-Length", "1000")]) + b"{")
    assert_healthy(gw)
    assert_echo(post_chat(gw, ECHO), "hello there")
    assert gw.gw.limiter.in_flight == 0


# ---------------------------------------------------------------- methods and paths


def test_wrong_method_is_405(gw: RunningGateway) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        r = request(gw, method, CHAT)
        assert_error(r, 405, "invalid_request_error", "method_not_allowed")
        assert "POST" in r.headers.get("allow", "")
    r = request(gw, "POST", "/health", b"{}")
    assert_error(r, 405, "invalid_request_error", "method_not_allowed")
    assert_healthy(gw)


def test_unknown_path_is_404(gw: RunningGateway) -> None:
    for method, path in (
        ("GET", "/nope"),
        ("POST", "/v1/chat/completion"),
        ("POST", "/v1/chat/completions/extra"),
        ("GET", "/v2/models"),
        ("GET", "/%2e%2e/%2e%2e/etc/passwd"),
    ):
        r = request(gw, method, path, b"{}" if method == "POST" else None)
        assert_error(r, 404, "not_found_error", "unknown_url")
    assert_healthy(gw)


# ---------------------------------------------------------------- request ids


def test_every_response_has_a_request_id(gw: RunningGateway) -> None:
    seen = {
        assert_request_id(post_chat(gw, ECHO)),
        assert_request_id(post_chat(gw, b"nope")),
        assert_request_id(post_chat(gw, ECHO, key=None)),
        assert_request_id(request(gw, "GET", "/health", key=None)),
        assert_request_id(request(gw, "GET", "/nope")),
        assert_request_id(request(gw, "GET", CHAT)),
        assert_request_id(raw_exchange(gw, b"GARBAGE\r\n\r\n")),
        assert_request_id(raw_exchange(gw, head(gw, [("X-Big", "a" * 100_000)]))),
    }
    assert len(seen) == 8, seen  # fresh for each request


def test_client_request_id_is_echoed(gw: RunningGateway) -> None:
    h = {"X-Request-ID": "abc-123"}
    assert post_chat(gw, ECHO, headers=h).headers["x-request-id"] == "abc-123"
    assert post_chat(gw, b"{", headers=h).headers["x-request-id"] == "abc-123"
    assert post_chat(gw, ECHO, headers=h, key=None).headers["x-request-id"] == "abc-123"
    ok = "req_01H:abc.DEF-9_z"
    assert post_chat(gw, ECHO, headers={"X-Request-ID": ok}).headers["x-request-id"] == ok


@pytest.mark.parametrize(
    "junk",
    ["abc 123", "a" * 500, "<script>alert(1)</script>", "a/b", "x;y=1", "a\tb"],
    ids=["space", "500_chars", "html", "slash", "semicolon", "tab"],
)
def test_junk_request_id_is_replaced(gw: RunningGateway, junk: str) -> None:
    r = post_chat(gw, ECHO, headers={"X-Request-ID": junk})
    assert_echo(r, "hello there")
    assert GENERATED_ID.match(r.headers["x-request-id"]), r.headers["x-request-id"]


def test_non_ascii_request_id_is_replaced(gw: RunningGateway) -> None:
    body = json.dumps(ECHO).encode()
    raw = head(gw, [("X-Request-ID", "caf\xe9"), ("Content-Length", str(len(body)))])
    r = raw_exchange(gw, raw + body)
    assert_echo(r, "hello there")
    assert GENERATED_ID.match(r.headers["x-request-id"])


# ---------------------------------------------------------------- secrets


AUTH_FAIL_CONFIG = """\
master_key: {master}
providers:
  - name: fakeai
    type: openai
    base_url: {url}/v1
    api_key: ${{FAKE_UPSTREAM_KEY}}
    timeouts: {{connect: 2, first_byte: 3, total: 10}}
models:
  - name: authfail
    provider: fakeai
    model: fake-error-401
  - name: forbidden
    provider: fakeai
    model: fake-error-403
  - name: gpt-test
    provider: fakeai
    model: fake-plain
"""


def test_upstream_key_never_leaks(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    gw = gateway_factory(AUTH_FAIL_CONFIG.format(master=MASTER_KEY, url=fake_upstream[1]))
    for stream in (False, True):
        for model in ("authfail", "forbidden"):
            r = post_chat(gw, {"model": model, "messages": USER, "stream": stream})
            err = assert_error(r, 502, "upstream_error", "upstream_auth_failed")
            assert b"sk-upstr" not in r.body, err
    # The key did go upstream (so the test means something), and never came back.
    assert fake.requests
    assert {s.headers.get("authorization") for s in fake.requests} == {f"Bearer {UPSTREAM_KEY}"}
    ok = post_chat(gw, {"model": "gpt-test", "messages": USER})
    assert_echo(ok, "fake: hello there", model="gpt-test")
    for path in ("/health", "/healthz", "/metrics", "/openapi.json", "/docs"):
        assert_no_leak(request(gw, "GET", path))
    assert_healthy(gw)
