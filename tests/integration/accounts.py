"""Helpers for the keys, limits and spend tests: admin calls, key-authenticated calls."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import openai

from tests.conftest import MASTER_KEY

PRICED = (
    # $1,000 per million output tokens: "fake: hi" (2 completion tokens) costs $0.002.
    "  - name: priced\n"
    "    provider: fakeai\n"
    "    model: fake-plain\n"
    "    price: {input: 0, output: 1000}\n"
    "  - name: priced-slow\n"
    "    provider: fakeai\n"
    "    model: fake-slow\n"
    "    price: {input: 0, output: 1000}\n"
)


def config(upstream: str, extra: str = "", models: str = PRICED) -> str:
    return (
        f"master_key: {MASTER_KEY}\n"
        f"{extra}"
        "providers:\n"
        "  - name: fakeai\n"
        "    type: openai\n"
        f"    base_url: {upstream}/v1\n"
        "    api_key: sk-upstream-secret-value\n"
        "    timeouts: {connect: 2, first_byte: 5, total: 10}\n"
        f"models:\n{models}"
    )


def request(
    url: str,
    method: str,
    path: str,
    doc: Any = None,
    key: str = MASTER_KEY,
    timeout: float = 20,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, lower-cased headers, parsed JSON body) of one HTTP call."""
    extra = headers or {}
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        body = None if doc is None else (doc if isinstance(doc, bytes) else json.dumps(doc))
        sent = {"Authorization": f"Bearer {key}", **extra}
        if body is not None:
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body, sent)
        r = conn.getresponse()
        raw = r.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed
    finally:
        conn.close()


def new_key(url: str, **fields: Any) -> dict[str, Any]:
    status, _, doc = request(url, "POST", "/admin/keys", fields)
    assert status == 201, doc
    assert doc["key"].startswith("sk-llmp-")
    return dict(doc)


def client(url: str, key: str, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=20, **kw)


def hi(
    url: str, key: str, model: str = "priced", headers: dict[str, str] | None = None, **kw: Any
) -> int:
    """A chat call with the key: its HTTP status."""
    doc = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **kw}
    status, _, _ = request(url, "POST", "/v1/chat/completions", doc, key=key, headers=headers)
    return status


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> float:
    """Seconds it took for cond() to hold; fails after `timeout`."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not met in time")
        time.sleep(step)
    return time.monotonic() - t0
