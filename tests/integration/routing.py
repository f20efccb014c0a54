"""Shared pieces of the routing tests: three providers (`a`, `b`, `c`) on the one fake upstream,
so the upstream model id each request carries says which deployment it reached."""

from __future__ import annotations

from typing import Any

from tests.conftest import MASTER_KEY, RunningGateway
from tests.fakes.openai import FakeOpenAI

USER = [{"role": "user", "content": "are you there"}]
REPLY = "fake: are you there"


def config(url: str, models: str, extra: str = "") -> str:
    """A gateway config: providers a, b, c (first_byte timeout 0.5 s), then `models`."""
    providers = "".join(
        f"  - name: {n}\n    base_url: {url}/v1\n    api_key: k\n"
        "    timeouts: {connect: 1, first_byte: 0.5, total: 5}\n"
        for n in ("a", "b", "c")
    )
    return f"master_key: {MASTER_KEY}\n{extra}providers:\n{providers}models:\n{models}"


def two(first: str, second: str = "fake-plain", extra: str = "") -> str:
    """Model `m`: a/<first>, then b/<second>."""
    return (
        f"  - name: m\n{extra}    deployments:\n"
        f"      - {{provider: a, model: {first}}}\n"
        f"      - {{provider: b, model: {second}}}\n"
    )


def seen(fake: FakeOpenAI) -> list[str]:
    """The upstream model ids of the chat requests the fake received, in order."""
    return [str(r.body["model"]) for r in fake.requests if r.body]


def ask(gw: RunningGateway, **kw: Any) -> Any:
    """A plain call to model `m` with the raw response (headers) kept."""
    return gw.client().chat.completions.with_raw_response.create(model="m", messages=USER, **kw)
