"""Three OpenAI-compatible vendors switched on from their environment variables, each through
the fake OpenAI upstream: plain, streamed, tool round trip, image input, json_schema, errors.
Vendor differences are registry data (providers/registry.py), so one suite covers them all.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, RunningGateway
from tests.fakes.openai import FakeOpenAI

VENDOR_KEY = "vendor-fake-key-0123456789"
USER = [{"role": "user", "content": "hi vendor"}]
VENDORS = ("openrouter", "xai", "perplexity")


@pytest.fixture(params=VENDORS)
def vendor(
    request: pytest.FixtureRequest,
    gateway_factory: Any,
    fake_upstream: tuple[FakeOpenAI, str],
    fake: FakeOpenAI,
) -> tuple[str, RunningGateway]:
    name = request.param
    env = {
        f"{name.upper()}_API_KEY": VENDOR_KEY,
        f"{name.upper()}_BASE_URL": f"{fake_upstream[1]}/v1",
    }
    if name == "openrouter":
        env |= {"OPENROUTER_SITE_URL": "https://app.example", "OPENROUTER_APP_NAME": "Example App"}
    return name, gateway_factory(f"master_key: {MASTER_KEY}\n", env=env)


def test_plain_stream_tools_image_json(
    vendor: tuple[str, RunningGateway], fake: FakeOpenAI
) -> None:
    name, gw = vendor
    c = gw.client()
    r = c.chat.completions.create(model=f"{name}/fake-plain", messages=USER)
    assert r.choices[0].message.content == "fake: hi vendor"
    seen = fake.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {VENDOR_KEY}"
    assert seen.body is not None and seen.body["model"] == "fake-plain"
    if name == "openrouter":
        assert seen.headers["http-referer"] == "https://app.example"
        assert seen.headers["x-title"] == "Example App"
    text = "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(model=f"{name}/fake-plain", messages=USER, stream=True)
        if ch.choices
    )
    assert text == "fake: hi vendor"
    tool = c.chat.completions.create(model=f"{name}/fake-tool", messages=USER)
    call = tool.choices[0].message.tool_calls[0]  # type: ignore[index]
    follow: Any = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and the picture?"},
                {"type": "image_url", "image_url": {"url": "https://e.org/p.png"}},
            ],
        },
    ]
    rf: Any = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    extra: Any = {"provider": {"order": ["a", "b"]}} if name == "openrouter" else {}
    r2 = c.chat.completions.create(
        model=f"{name}/fake-plain", messages=follow, response_format=rf, extra_body=extra
    )
    assert r2.choices[0].message.content == "fake: and the picture?"
    sent = fake.requests[-1].body
    assert sent is not None and sent["messages"] == follow and sent["response_format"] == rf
    if name == "openrouter":
        assert sent["provider"] == {"order": ["a", "b"]}  # routing preferences pass through


@pytest.mark.parametrize(
    ("scenario", "exc", "status"),
    [
        ("fake-error-401", openai.InternalServerError, 502),
        ("fake-error-404", openai.NotFoundError, 404),
        ("fake-error-429", openai.RateLimitError, 429),
        ("fake-error-500", openai.InternalServerError, 502),
        ("fake-error-503", openai.InternalServerError, 503),
    ],
)
def test_errors(
    vendor: tuple[str, RunningGateway], scenario: str, exc: type[openai.APIStatusError], status: int
) -> None:
    name, gw = vendor
    with pytest.raises(exc) as e:
        gw.client().chat.completions.create(model=f"{name}/{scenario}", messages=USER)
    assert e.value.status_code == status
    if status == 429:
        assert e.value.response.headers["retry-after"] == "2"
    assert VENDOR_KEY not in json.dumps(e.value.body)


def test_context_length(vendor: tuple[str, RunningGateway]) -> None:
    name, gw = vendor
    with pytest.raises(openai.BadRequestError) as e:
        gw.client().chat.completions.create(
            model=f"{name}/fake-error-400", messages=USER, extra_body={"fake_context": True}
        )
    assert e.value.code == "context_length_exceeded"


def test_perplexity_citations_are_kept(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    gw = gateway_factory(
        f"master_key: {MASTER_KEY}\n",
        env={"PERPLEXITY_API_KEY": VENDOR_KEY, "PERPLEXITY_BASE_URL": f"{fake_upstream[1]}/v1"},
    )
    raw = gw.client().chat.completions.with_raw_response.create(
        model="perplexity/fake-citations", messages=USER
    )
    doc = json.loads(raw.text)
    assert doc["citations"] == ["https://example.org/a", "https://example.org/b"]
    assert doc["search_results"][0]["url"] == "https://example.org/a"
    assert fake.requests[-1].body is not None
    assert fake.requests[-1].body["model"] == "fake-citations"
    chunks = list(
        gw.client().chat.completions.create(
            model="perplexity/fake-citations", messages=USER, stream=True
        )
    )
    assert all(
        c.model_extra and c.model_extra["citations"][0] == "https://example.org/a" for c in chunks
    )
