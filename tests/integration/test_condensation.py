"""Seed 003's context condensation: summarise older messages on a context-length error, retry once.

`fake-context-<n>` refuses requests whose messages hold more than n characters (OpenAI's
context_length_exceeded 400); `fake-summarize` answers "SUMMARY(<lines> lines)".
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.fakes.openai import FakeOpenAI
from tests.integration.routing import config

SYSTEM = {"role": "system", "content": "You are terse."}
OLDER = [
    {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * 60}
    for i in range(6)
]
LAST = {"role": "user", "content": "so what now"}
CONVERSATION = [SYSTEM, *OLDER, LAST]


@pytest.fixture
def make(gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI) -> Any:
    def build(limit: int = 200, summariser: str = "fake-summarize", extra: str = "") -> Any:
        models = (
            f"  - name: m\n    provider: a\n    model: fake-context-{limit}\n"
            f"  - name: summariser\n    provider: b\n    model: {summariser}\n"
        )
        cond = f"condensation:\n  model: summariser\n{extra}"
        return gateway_factory(config(fake_upstream[1], models, cond))

    return build


def bodies(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.body]


def test_context_error_is_condensed_then_answered(make: Any, fake: FakeOpenAI) -> None:
    gw = make()
    raw = gw.client().chat.completions.with_raw_response.create(model="m", messages=CONVERSATION)
    assert raw.parse().choices[0].message.content == "fake: so what now"
    assert raw.headers["x-llm-proxy-condensed"] == "summary"
    first, ask, retry = bodies(fake)
    assert [first["model"], ask["model"], retry["model"]] == [
        "fake-context-200",
        "fake-summarize",
        "fake-context-200",
    ]
    assert first["messages"] == CONVERSATION
    # The summariser got the older turns as a transcript, with an adaptive max_tokens.
    transcript = ask["messages"][1]["content"]
    assert transcript.splitlines()[0] == "user: turn 0 " + "x" * 60
    assert len(transcript.splitlines()) == 6
    assert ask["max_tokens"] == int(len(transcript) * 0.5)  # min(chars * 0.5, 512)
    assert retry["messages"] == [
        SYSTEM,
        {"role": "system", "content": "Summary of the earlier conversation: SUMMARY(6 lines)"},
        LAST,
    ]
    # The same conversation again: the summary comes from the cache.
    fake.reset()
    again = gw.client().chat.completions.with_raw_response.create(model="m", messages=CONVERSATION)
    assert again.headers["x-llm-proxy-condensed"] == "summary"
    assert [b["model"] for b in bodies(fake)] == ["fake-context-200", "fake-context-200"]


def test_a_slow_summariser_falls_back_to_truncation(make: Any, fake: FakeOpenAI) -> None:
    gw = make(limit=300, summariser="fake-first-2000", extra="  timeout: 0.3\n")
    raw = gw.client().chat.completions.with_raw_response.create(model="m", messages=CONVERSATION)
    assert raw.headers["x-llm-proxy-condensed"] == "truncated"
    assert raw.parse().choices[0].message.content == "fake: so what now"
    retry = bodies(fake)[-1]
    assert retry["model"] == "fake-context-300"
    # The oldest turns were dropped until at most half the characters were left.
    kept = len(OLDER) - (len(retry["messages"]) - 2)
    assert retry["messages"] == [SYSTEM, *OLDER[kept:], LAST]

    def size(msgs: list[dict[str, Any]]) -> int:
        return sum(len(json.dumps(m, separators=(",", ":"))) for m in msgs)

    assert (
        size(retry["messages"]) <= size(CONVERSATION) / 2 < size([SYSTEM, *OLDER[kept - 1 :], LAST])
    )


def test_streamed_requests_get_the_original_error(make: Any, fake: FakeOpenAI) -> None:
    gw = make()
    with pytest.raises(openai.BadRequestError) as e:
        gw.client().chat.completions.create(model="m", messages=CONVERSATION, stream=True)
    assert e.value.code == "context_length_exceeded"
    assert [b["model"] for b in bodies(fake)] == ["fake-context-200"]


def test_one_long_message_is_not_condensed(make: Any, fake: FakeOpenAI) -> None:
    gw = make()
    with pytest.raises(openai.BadRequestError) as e:
        gw.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": "y" * 500}]
        )
    assert e.value.code == "context_length_exceeded"
    assert [b["model"] for b in bodies(fake)] == ["fake-context-200"]


def test_error_keywords_detect_other_context_errors(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    models = (
        "  - name: m\n    provider: a\n    model: fake-error-400\n"
        "  - name: summariser\n    provider: b\n    model: fake-summarize\n"
    )
    cond = "condensation:\n  model: summariser\n  error_keywords: ['upstream error 400']\n"
    gw = gateway_factory(config(fake_upstream[1], models, cond))
    with pytest.raises(openai.BadRequestError):
        gw.client().chat.completions.create(model="m", messages=CONVERSATION)
    # Detected as a context error by its message: condensed and retried once, then given up.
    assert [b["model"] for b in bodies(fake)] == [
        "fake-error-400",
        "fake-summarize",
        "fake-error-400",
    ]


def test_condensation_can_be_switched_off(make: Any, fake: FakeOpenAI) -> None:
    gw = make(extra="  enabled: false\n")
    with pytest.raises(openai.BadRequestError):
        gw.client().chat.completions.create(model="m", messages=CONVERSATION)
    assert [b["model"] for b in bodies(fake)] == ["fake-context-200"]
