"""Seed 001's WebSocket API at /ws, over a real socket to a gateway in front of the fake upstream."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from llm_proxy.config.load import load_config
from tests.conftest import MASTER_KEY, GatewayFactory, RunningGateway, default_config
from tests.fakes.openai import FakeOpenAI

EXTRA_MODELS = """\
  - name: err-model
    provider: fakeai
    model: fake-error-500
  - name: limited-model
    provider: fakeai
    model: fake-error-429
"""


def ws_config(upstream: str, websocket: str = "", top: str = "") -> str:
    block = "websocket:\n  heartbeat_interval: 0.2\n" + websocket
    return default_config(upstream, EXTRA_MODELS + block + top)


def open_ws(gw: RunningGateway, key: str | None = MASTER_KEY, **kw: Any) -> ClientConnection:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = gw.url.replace("http://", "ws://") + "/ws"
    return connect(url, additional_headers=headers, open_timeout=5, **kw)


def send(ws: ClientConnection, doc: Any) -> None:
    ws.send(doc if isinstance(doc, str) else json.dumps(doc))


def recv(ws: ClientConnection, timeout: float = 5.0, heartbeats: bool = False) -> dict[str, Any]:
    """The next message (heartbeats skipped unless asked for)."""
    deadline = time.monotonic() + timeout
    while True:
        doc: dict[str, Any] = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if heartbeats or doc["type"] != "heartbeat":
            return doc


def collect(
    ws: ClientConnection, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Every message (heartbeats included) until `done(messages)` holds."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(out):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; got {out}"
        out.append(json.loads(ws.recv(timeout=left)))
    return out


def request(rid: Any, text: str = "hello there", model: str = "gpt-test", **data: Any) -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **data}
    return {"type": "inference_request", "id": rid, "data": body}


def closed_with(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the server closes; the close code it sent."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as info:
        while time.monotonic() < deadline:
            ws.recv(timeout=deadline - time.monotonic())
    return info.value.rcvd.code if info.value.rcvd else None


def finals(msgs: list[dict[str, Any]], rid: Any) -> list[dict[str, Any]]:
    return [m for m in msgs if m.get("id") == rid and m["type"] == "inference_response"]


def text_of(msgs: list[dict[str, Any]], rid: Any) -> str:
    return "".join(m["data"]["content"] for m in finals(msgs, rid))


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.fixture
def ws_gateway(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> RunningGateway:
    return gateway_factory(ws_config(fake_upstream[1]))


def test_multiplexed_streams_with_cancel_and_heartbeats(
    ws_gateway: RunningGateway, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """The acceptance test: 3 overlapping streams on one socket, one cancelled mid-stream."""
    caplog.set_level(logging.INFO, logger="llm_proxy")
    words_a = "alpha beta gamma delta"
    words_c = "one two three four five"
    with open_ws(ws_gateway) as ws:
        send(ws, request("a", words_a, fake_delay=0.15))
        send(ws, request("b", " ".join(["long"] * 30), fake_delay=0.15))
        send(ws, request(7, words_c, fake_delay=0.15))

        def b_started(ms: list[dict[str, Any]]) -> bool:
            return any(m.get("id") == "b" and m["data"]["content"] for m in finals(ms, "b"))

        msgs = collect(ws, b_started)
        send(ws, {"type": "cancel", "id": "b"})

        def settled(ms: list[dict[str, Any]]) -> bool:
            everything = msgs + ms
            done = [
                m for m in everything if m["type"] == "inference_response" and m["data"].get("done")
            ]
            cancelled = any(m["type"] == "cancelled" and m["id"] == "b" for m in everything)
            return len(done) == 2 and cancelled

        msgs += collect(ws, settled)
        # Nothing more for "b" after `cancelled`, even while the others are long finished.
        time.sleep(0.5)
        send(ws, {"type": "ping"})
        tail = collect(ws, lambda ms: any(m["type"] == "heartbeat" for m in ms))
    assert not [m for m in tail if m.get("id") == "b"]

    for rid, words in (("a", words_a), (7, words_c)):
        got = finals(msgs, rid)
        assert len(got) >= 3, got  # one message per word, then the final one
        assert text_of(msgs, rid) == f"fake: {words}"
        last = got[-1]["data"]
        assert last["done"] is True and last["content"] == ""
        assert last["finish_reason"] == "stop"
        n = len(words.split()) + 1
        assert (
            last["usage"]["completion_tokens"] == n and last["usage"]["total_tokens"] == n + n - 1
        )
        assert last["model"] and isinstance(last["created"], int) and last["request_id"]
        assert all("done" not in m["data"] for m in got[:-1])
    # The streams overlapped: "7" produced content before "a" had finished.
    order = [m["id"] for m in msgs if m["type"] == "inference_response"]
    assert order.index(7) < max(i for i, x in enumerate(order) if x == "a")

    b_msgs = [m for m in msgs if m.get("id") == "b"]
    assert b_msgs[-1] == {"type": "cancelled", "id": "b"}
    assert not any(m["type"] == "inference_response" and m["data"].get("done") for m in b_msgs)
    assert 0 < len(b_msgs) - 1 < 31
    assert sum(1 for m in msgs if m["type"] == "heartbeat") >= 2
    hb = next(m for m in msgs if m["type"] == "heartbeat")
    assert abs(hb["timestamp"] - time.time() * 1000) < 60_000
    # The upstream saw the cancelled call go away, and only that one.
    assert wait_for(lambda: fake.disconnects == ["fake-plain"]), fake.disconnects
    bodies = [r.body for r in fake.requests if r.body]
    assert len(bodies) == 3 and all(b["stream"] is True for b in bodies)
    assert all(b["stream_options"]["include_usage"] is True for b in bodies)
    # Recorded like HTTP calls: two 200s and a 499 (the client went away), nothing logged as broken.
    assert wait_for(lambda: len([r for r in caplog.records if r.getMessage() == "call"]) == 3)
    calls = sorted(getattr(r, "status", 0) for r in caplog.records if r.getMessage() == "call")
    assert calls == [200, 200, 499]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_auth_by_first_message(ws_gateway: RunningGateway, fake: FakeOpenAI) -> None:
    for field in ("token", "api_key"):
        with open_ws(ws_gateway, key=None) as ws:
            send(ws, {"type": "auth", field: MASTER_KEY})
            assert recv(ws) == {"type": "authenticated"}
            send(ws, request("r1", "hi"))
            msgs = collect(ws, lambda ms: any(m["data"].get("done") for m in finals(ms, "r1")))
            assert text_of(msgs, "r1") == "fake: hi"
            send(ws, {"type": "auth", "token": MASTER_KEY})
            assert recv(ws)["error"]["error_code"] == "already_authenticated"
    # The gateway key is never forwarded upstream.
    assert all(MASTER_KEY not in json.dumps(r.headers) for r in fake.requests)


@pytest.mark.parametrize(
    "how", ["header", "message", "no-auth-message", "not-json", "x-api-key-header"]
)
def test_bad_or_missing_key_is_an_error_then_close_1008(
    ws_gateway: RunningGateway, fake: FakeOpenAI, how: str
) -> None:
    secret = "sk-wrong-key-1234567890"
    if how == "header":
        ws = open_ws(ws_gateway, key=secret)
    elif how == "x-api-key-header":
        url = ws_gateway.url.replace("http://", "ws://") + "/ws"
        ws = connect(url, additional_headers={"X-API-Key": secret}, open_timeout=5)
    else:
        ws = open_ws(ws_gateway, key=None)
        first = {
            "message": {"type": "auth", "token": secret},
            "no-auth-message": request("x"),
            "not-json": "{nope",
        }[how]
        send(ws, first)
    with ws:
        err = recv(ws)
        assert err["type"] == "error" and "id" not in err
        assert err["error"]["code"] == 401 and err["error"]["type"] == "authentication"
        assert secret not in json.dumps(err)
        close = recv(ws)
        assert close["type"] == "close" and close["code"] == 1008
        assert closed_with(ws) == 1008
    assert not fake.requests


def test_auth_message_must_come_in_time(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    gw = gateway_factory(ws_config(fake_upstream[1], "  auth_timeout: 0.3\n"))
    with open_ws(gw, key=None) as ws:
        started = time.monotonic()
        err = recv(ws)
        assert err["error"]["code"] == 401 and err["error"]["error_code"] == "missing_api_key"
        assert time.monotonic() - started < 3
        assert recv(ws)["type"] == "close"
        assert closed_with(ws) == 1008


def test_protocol_errors_keep_the_socket_open(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    gw = gateway_factory(ws_config(fake_upstream[1], "  max_message_bytes: 2048\n"))
    cases: list[tuple[Any, int, Any, str | None]] = [
        # (message, code, id in the error (None: none), param)
        ("{not json", 400, None, None),
        ("[1, 2]", 400, None, None),
        ({"type": "bogus", "id": "q1"}, 400, "q1", "type"),
        ({"id": "q2"}, 400, "q2", "type"),
        ({"type": "inference_request", "data": {"model": "gpt-test"}}, 400, None, "id"),
        ({"type": "inference_request", "id": ""}, 400, None, "id"),
        ({"type": "inference_request", "id": True, "data": {}}, 400, None, "id"),
        ({"type": "inference_request", "id": "q3"}, 400, "q3", "data"),
        ({"type": "inference_request", "id": "q4", "data": {"model": "gpt-test"}}, 400, "q4", None),
        (request("q5", model="no-such-model"), 404, "q5", None),
        ({"type": "cancel", "id": "never-sent"}, 404, "never-sent", None),
        ({"type": "cancel"}, 400, None, "id"),
        (json.dumps(request("q6", "x" * 3000)), 413, None, None),
        # Nested deeper than JSON output allows: an error for that id, not a dead socket.
        (
            '{"type":"inference_request","id":"q7","data":{"model":"gpt-test","x":'
            + "[" * 300
            + "]" * 300
            + "}}",
            400,
            "q7",
            None,
        ),
    ]
    with open_ws(gw) as ws:
        for message, code, rid, param in cases:
            send(ws, message)
            err = recv(ws)
            assert err["type"] == "error", (message, err)
            assert err["error"]["code"] == code, (message, err)
            assert err.get("id") == rid, (message, err)
            assert err["error"]["type"] == "validation", (message, err)
            if param is not None:
                assert err["error"]["param"] == param, (message, err)
        # A duplicate in-flight id: 409 for that id, the first request carries on.
        send(ws, request("dup", "first one", fake_delay=0.1))
        send(ws, request("dup", "second one"))
        msgs = collect(ws, lambda ms: any(m["data"].get("done") for m in finals(ms, "dup")))
        errs = [m for m in msgs if m["type"] == "error"]
        assert len(errs) == 1 and errs[0]["id"] == "dup" and errs[0]["error"]["code"] == 409
        assert errs[0]["error"]["error_code"] == "duplicate_id"
        assert text_of(msgs, "dup") == "fake: first one"
        # The id is free again once its final message went out.
        send(ws, request("dup", "again"))
        msgs = collect(ws, lambda ms: any(m["data"].get("done") for m in finals(ms, "dup")))
        assert text_of(msgs, "dup") == "fake: again"
    assert fake.count("fake-plain") == 2


def test_upstream_errors_are_error_messages_for_their_id(ws_gateway: RunningGateway) -> None:
    with open_ws(ws_gateway) as ws:
        send(ws, request("e1", model="err-model"))
        err = recv(ws)
        assert err["type"] == "error" and err["id"] == "e1"
        assert err["error"]["code"] >= 500 and err["error"]["type"] == "openrouter"
        assert err["error"]["message"]
        send(ws, request("e2", model="limited-model"))
        err = recv(ws)
        assert err["id"] == "e2" and err["error"]["code"] == 429
        assert err["error"]["type"] == "rate_limit"
        # An error event after the stream started: the deltas so far, then the error.
        send(ws, request("e3", "a b c", model="midstream-error-model"))
        msgs = collect(ws, lambda ms: any(m["type"] == "error" for m in ms))
        assert msgs[-1]["id"] == "e3" and msgs[-1]["error"]["type"] == "openrouter"
        assert msgs[-1]["error"]["code"] == 502
        assert not any(m["type"] == "inference_response" and m["data"].get("done") for m in msgs)
        # The socket still works.
        send(ws, request("ok", "fine"))
        msgs = collect(ws, lambda ms: any(m["data"].get("done") for m in finals(ms, "ok")))
        assert text_of(msgs, "ok") == "fake: fine"


def test_max_connections_refuses_with_1013(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    gw = gateway_factory(ws_config(fake_upstream[1]), env={"WS_MAX_CONNECTIONS": "2"})
    assert gw.gw.runtime.settings.websocket.max_connections == 2
    first, second = open_ws(gw), open_ws(gw)
    with open_ws(gw) as third:
        err = recv(third)
        assert err["error"]["code"] == 503 and err["error"]["error_code"] == "too_many_connections"
        assert recv(third) == {"type": "close", "reason": "Too many connections", "code": 1013}
        assert closed_with(third) == 1013
    # The two admitted ones work; closing one makes room for another.
    send(second, {"type": "ping"})
    assert recv(second, heartbeats=True)["type"] == "heartbeat"
    first.close()
    time.sleep(0.2)
    with open_ws(gw) as again:
        send(again, request("r", "room"))
        msgs = collect(again, lambda ms: any(m["data"].get("done") for m in finals(ms, "r")))
        assert text_of(msgs, "r") == "fake: room"
    second.close()


def test_ip_connection_rate(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    top = "ip_limits:\n  exempt: []\n  websocket: {limit: 2, window: 60}\n"
    gw = gateway_factory(ws_config(fake_upstream[1], top=top))
    for _ in range(2):
        with open_ws(gw) as ws:
            send(ws, {"type": "ping"})
            assert recv(ws, heartbeats=True)["type"] == "heartbeat"
    with open_ws(gw) as ws:
        err = recv(ws)
        assert err["error"]["code"] == 429 and err["error"]["type"] == "rate_limit"
        assert err["error"]["retry_after"] >= 1
        assert recv(ws)["code"] == 1013
        assert closed_with(ws) == 1013


def test_client_close_message_gets_a_close_message(
    ws_gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    with open_ws(ws_gateway) as ws:
        send(ws, request("slow", "w " * 20, fake_delay=0.2))
        collect(ws, lambda ms: bool(finals(ms, "slow")))
        send(ws, {"type": "close"})
        msgs = collect(ws, lambda ms: any(m["type"] == "close" for m in ms))
        assert {"type": "cancelled", "id": "slow"} in msgs
        assert msgs[-1] == {"type": "close", "reason": "Client requested close", "code": 1000}
        assert closed_with(ws) == 1000
    assert wait_for(lambda: fake.disconnects == ["fake-plain"])


def test_disconnect_cancels_every_stream(ws_gateway: RunningGateway, fake: FakeOpenAI) -> None:
    ws = open_ws(ws_gateway)
    send(ws, request(1, "x " * 30, fake_delay=0.2))
    send(ws, request(2, "y " * 30, fake_delay=0.2))
    collect(ws, lambda ms: bool(finals(ms, 1)) and bool(finals(ms, 2)))
    ws.close()
    assert wait_for(lambda: len(fake.disconnects) == 2), fake.disconnects


def test_streams_per_connection_cap_and_idle_close(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    extra = "  max_streams_per_connection: 2\n  idle_timeout: 0.5\n"
    gw = gateway_factory(ws_config(fake_upstream[1], extra))
    with open_ws(gw) as ws:
        for rid in ("s1", "s2", "s3"):
            send(ws, request(rid, "a b c d", fake_delay=0.1))
        msgs = collect(
            ws,
            lambda ms: (
                sum(1 for m in ms if m["type"] == "inference_response" and m["data"].get("done"))
                == 2
            ),
        )
        errs = [m for m in msgs if m["type"] == "error"]
        assert [e["id"] for e in errs] == ["s3"] and errs[0]["error"]["code"] == 429
        assert errs[0]["error"]["error_code"] == "too_many_streams"
        # Streaming kept the socket from counting as idle; now nothing is in flight.
        close = collect(ws, lambda ms: any(m["type"] == "close" for m in ms), timeout=5)[-1]
        assert close == {"type": "close", "reason": "Idle timeout", "code": 1000}
        assert closed_with(ws) == 1000


def test_public_ws_path_needs_no_key(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    top = "reload_interval: 0.1\npublic_paths: [/health, /ws]\n"
    gw = gateway_factory(ws_config(fake_upstream[1], top=top))
    with open_ws(gw, key=None) as ws:
        send(ws, request("p", "open"))
        msgs = collect(ws, lambda ms: any(m["data"].get("done") for m in finals(ms, "p")))
        assert text_of(msgs, "p") == "fake: open"
        # A reload makes /ws keyed: the open keyless socket may not go on.
        path = gw.config_path
        tmp = path.with_suffix(".tmp")
        tmp.write_text(path.read_text().replace("public_paths: [/health, /ws]", "public_paths: []"))
        tmp.replace(path)
        deadline = time.monotonic() + 10
        while gw.gw.reloads == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.gw.reloads == 1
        send(ws, request("q", "again"))
        err = recv(ws)
        assert err["type"] == "error" and err["id"] == "q" and err["error"]["code"] == 401
        assert recv(ws)["type"] == "close"
        assert closed_with(ws) == 1008


def test_disallowed_origin_is_refused(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    top = "cors_allow_origins: [https://app.example]\n"
    gw = gateway_factory(ws_config(fake_upstream[1], top=top))
    with open_ws(gw, origin="https://evil.example") as ws:
        assert recv(ws)["error"]["code"] == 403
        assert closed_with(ws) == 1008
    with open_ws(gw, origin="https://app.example") as ws:
        send(ws, {"type": "heartbeat", "timestamp": 1})
        assert recv(ws, heartbeats=True)["type"] == "heartbeat"


def test_ws_env_vars_and_file_block_merge(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("websocket:\n  max_streams_per_connection: 3\n  max_connections: 9\n")
    env = {"WS_MAX_CONNECTIONS": "7", "WS_HEARTBEAT_INTERVAL": "1500"}
    ws = load_config(path, env).settings.websocket
    assert (ws.max_connections, ws.heartbeat_interval, ws.max_streams_per_connection) == (7, 1.5, 3)
    defaults = load_config(None, {}).settings.websocket
    assert (defaults.max_connections, defaults.heartbeat_interval) == (1000, 30.0)
    from llm_proxy.config.load import ConfigError

    with pytest.raises(ConfigError, match="WS_HEARTBEAT_INTERVAL"):
        load_config(None, {"WS_HEARTBEAT_INTERVAL": "soon"})


def test_server_shutdown_closes_with_1012_and_cancels(
    ws_gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    ws = open_ws(ws_gateway)
    send(ws, request("s", "z " * 30, fake_delay=0.2))
    collect(ws, lambda ms: bool(finals(ms, "s")))
    ws_gateway.server.stop()
    assert closed_with(ws) == 1012  # uvicorn's "service restart"
    assert wait_for(lambda: fake.disconnects == ["fake-plain"]), fake.disconnects


def test_virtual_key_limits_apply_and_revocation_closes_the_socket(
    ws_gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    from tests.integration.accounts import new_key
    from tests.integration.accounts import request as http

    k = new_key(ws_gateway.url, models=["gpt-test"])
    with open_ws(ws_gateway, key=None) as ws:
        send(ws, {"type": "auth", "token": k["key"]})
        assert recv(ws) == {"type": "authenticated"}
        send(ws, request("ok", "mine"))
        msgs = collect(ws, lambda ms: any(m["data"].get("done") for m in finals(ms, "ok")))
        assert text_of(msgs, "ok") == "fake: mine"
        send(ws, request("no", model="tool-model"))
        err = recv(ws)
        assert err["id"] == "no" and err["error"]["code"] == 403
        assert err["error"]["type"] == "permission" and err["error"]["param"] == "model"
        status, _, _ = http(ws_gateway.url, "PATCH", f"/admin/keys/{k['id']}", {"disabled": True})
        assert status == 200
        send(ws, request("late", "after revocation"))
        err = recv(ws)
        assert err["id"] == "late" and err["error"]["code"] == 401
        assert err["error"]["error_code"] == "key_disabled"
        assert recv(ws)["code"] == 1008
        assert closed_with(ws) == 1008
    assert fake.count("fake-plain") == 1
