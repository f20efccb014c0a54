"""Keys, limits, budgets and the spend log on the APIs besides chat (decision 0015): every
endpoint goes through the one call pipeline, so /v1/embeddings, /v1/messages (passed through to
Anthropic or translated to OpenAI chat), /v1/responses and /v1/completions are billed, limited
and refused exactly as /v1/chat/completions is.

Usage comes from the fakes (tests/fakes/openai.py, tests/fakes/anthropic.py: token counts are
words); every deployment here has a `price` (USD per million tokens), so each row's cost is
tokens * price / 1e6, checked to the cent's millionth.
"""

# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory, RunningGateway
from tests.fakes.openai import FakeOpenAI
from tests.integration.accounts import client, new_key, request, wait_until
from tests.integration.test_spend import logged

ANTHROPIC_KEY = "test-anthropic-upstream-key-acct"
USER: Any = [{"role": "user", "content": "hello big world"}]

# USD per million tokens, per public model.
GPT = {"input": 1000, "output": 2000}
CLAUDE = {"input": 3000, "output": 15000, "cached_input": 300}
EMB = {"input": 20, "output": 0}
NATIVE = {"input": 2500, "output": 10000}
COMPAT = {"input": 500, "output": 1500}
# $0.001 per output token, nothing for input: a budget counts output tokens exactly.
DEAR = {"input": 0, "output": 1000}


def _price(p: dict[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in p.items()) + "}"


def _config(anthropic_url: str, openai_url: str) -> str:
    return f"""\
master_key: {MASTER_KEY}
spend: {{flush_interval: 0.1}}
providers:
  - name: claude
    type: anthropic
    base_url: {anthropic_url}/v1
    api_key: {ANTHROPIC_KEY}
  - name: fakeai
    type: openai
    base_url: {openai_url}/v1
    api_key: sk-fake-openai-upstream
  - name: vllm  # OpenAI-compatible, not OpenAI: /v1/responses is translated to chat
    type: openai
    base_url: {openai_url}/v1
models:
  - {{name: gpt-test, provider: fakeai, model: fake-plain, price: {_price(GPT)}}}
  - {{name: claude-fake, provider: claude, model: claude-fake, price: {_price(CLAUDE)}}}
  - {{name: emb, provider: fakeai, model: text-embedding-3-small, price: {_price(EMB)}}}
  - {{name: gpt-native, provider: fakeai, model: gpt-native-up, price: {_price(NATIVE)}}}
  - {{name: compat-chat, provider: vllm, model: fake-plain, price: {_price(COMPAT)}}}
  - {{name: claude-dear, provider: claude, model: claude-fake, price: {_price(DEAR)}}}
  - {{name: img, provider: fakeai, model: dall-e-3, price: {{input: 0, output: 0, per_request: 0.04}}}}
  - {{name: tts, provider: fakeai, model: tts-1, price: {{input: 0, output: 0, per_request: 0.015}}}}
"""


@pytest.fixture
def gw(
    gateway_factory: GatewayFactory,
    fake_anthropic_upstream: tuple[Any, str],
    fake_upstream: tuple[FakeOpenAI, str],
) -> RunningGateway:
    fake_anthropic_upstream[0].reset()
    fake_upstream[0].reset()
    return gateway_factory(_config(fake_anthropic_upstream[1], fake_upstream[1]))


def claude(url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=20)


def cost(p: dict[str, int], prompt: int, completion: int, cached: int = 0) -> float:
    cached_price = p.get("cached_input", p["input"])
    return ((prompt - cached) * p["input"] + cached * cached_price + completion * p["output"]) / 1e6


def rows_of(gw: RunningGateway, key_id: str, n: int) -> list[dict[str, Any]]:
    """The key's spend_log rows once `n` are flushed (oldest first); no more may turn up."""
    got = logged(gw.gw.runtime.settings, key_id, n)
    assert len(got) == n, got
    return got


def one_row(gw: RunningGateway, key_id: str) -> dict[str, Any]:
    return rows_of(gw, key_id, 1)[0]


def check_row(
    row: dict[str, Any],
    model: str,
    provider: str,
    upstream: str,
    price: dict[str, int],
    prompt: int,
    completion: int,
    stream: bool,
    cached: int = 0,
) -> None:
    got = (
        row["model"],
        row["provider"],
        row["deployment"],
        row["prompt_tokens"],
        row["completion_tokens"],
        row["cached_tokens"],
        row["status"],
        row["stream"],
    )
    want = (model, provider, f"{provider}/{upstream}", prompt, completion, cached, 200, stream)
    assert got == want, row
    assert row["cost"] == pytest.approx(cost(price, prompt, completion, cached), abs=1e-12)
    assert row["cost"] > 0
    assert row["latency_ms"] > 0
    if stream:
        assert row["ttft_ms"] is not None and row["ttft_ms"] > 0
    else:
        assert row["ttft_ms"] is None


# --- 1. spend rows per endpoint -------------------------------------------------------------


def test_embeddings_row_bills_the_upstream_prompt_tokens(gw: RunningGateway) -> None:
    k = new_key(gw.url, user="emb-user")
    raw = client(gw.url, k["key"]).embeddings.with_raw_response.create(
        model="emb", input=["hello world", "bye"]
    )
    r = raw.parse()
    assert r.usage.prompt_tokens == 3 and len(r.data) == 2
    row = one_row(gw, k["id"])
    check_row(row, "emb", "fakeai", "text-embedding-3-small", EMB, 3, 0, stream=False)
    assert row["cost"] == pytest.approx(3 * 20 / 1e6)
    assert row["request_id"] == raw.headers["x-request-id"]
    assert row["user"] == "emb-user"


def test_messages_passthrough_plain_row_has_anthropic_usage(gw: RunningGateway) -> None:
    k = new_key(gw.url)
    raw = claude(gw.url, k["key"]).messages.with_raw_response.create(
        model="claude-fake",
        max_tokens=100,
        system=[{"type": "text", "text": "be terse", "cache_control": {"type": "ephemeral"}}],
        messages=USER,
    )
    msg = raw.parse()
    assert msg.content[0].type == "text" and msg.content[0].text == "fake: hello big world"
    # system + messages: 5 words; cache_control present: 5 cache reads; "fake: hello big world"
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens) == (5, 5)
    assert msg.usage.output_tokens == 4
    row = one_row(gw, k["id"])
    # cache reads are part of the prompt, billed at cached_input
    check_row(row, "claude-fake", "claude", "claude-fake", CLAUDE, 10, 4, stream=False, cached=5)
    assert row["cost"] == pytest.approx((5 * 3000 + 5 * 300 + 4 * 15000) / 1e6)
    assert row["request_id"] == raw.headers["x-request-id"]


def test_messages_passthrough_stream_row_has_message_start_and_delta_usage(
    gw: RunningGateway, fake_anthropic_upstream: tuple[Any, str]
) -> None:
    k = new_key(gw.url)
    with claude(gw.url, k["key"]).messages.stream(
        model="claude-fake", max_tokens=100, messages=USER
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
        rid = s.response.headers["x-request-id"]
    assert text == "fake: hello big world"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)
    assert json.loads(fake_anthropic_upstream[0].requests[-1].raw)["stream"] is True
    row = one_row(gw, k["id"])
    # message_start says output_tokens 1, message_delta the final 4: the row has the final count
    check_row(row, "claude-fake", "claude", "claude-fake", CLAUDE, 3, 4, stream=True)
    assert row["request_id"] == rid


def test_messages_translated_plain_row_matches_the_same_chat_call(
    gw: RunningGateway, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    k = new_key(gw.url)
    msg = claude(gw.url, k["key"]).messages.create(
        model="gpt-test", max_tokens=64, system="be nice", messages=USER
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "fake: hello big world"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (5, 4)
    assert fake_upstream[0].requests[-1].path == "/v1/chat/completions"
    row = one_row(gw, k["id"])
    check_row(row, "gpt-test", "fakeai", "fake-plain", GPT, 5, 4, stream=False)

    # The same conversation as a chat completion is billed identically.
    c = new_key(gw.url)
    chat = client(gw.url, c["key"]).chat.completions.create(
        model="gpt-test",
        max_tokens=64,
        messages=[{"role": "system", "content": "be nice"}, *USER],
    )
    assert chat.usage is not None and chat.usage.prompt_tokens == 5
    twin = one_row(gw, c["id"])
    fields = ("model", "provider", "deployment", "prompt_tokens", "completion_tokens", "cost")
    assert {f: row[f] for f in fields} == {f: twin[f] for f in fields}


def test_messages_translated_stream_row(
    gw: RunningGateway, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    k = new_key(gw.url)
    with claude(gw.url, k["key"]).messages.stream(
        model="gpt-test", max_tokens=64, messages=USER
    ) as s:
        final = s.get_final_message()
        rid = s.response.headers["x-request-id"]
    assert final.content[0].type == "text" and final.content[0].text == "fake: hello big world"
    assert final.usage.output_tokens == 4
    sent = fake_upstream[0].requests[-1].body
    assert sent is not None and sent["stream_options"] == {"include_usage": True}
    row = one_row(gw, k["id"])
    check_row(row, "gpt-test", "fakeai", "fake-plain", GPT, 3, 4, stream=True)
    assert row["request_id"] == rid


def test_responses_translated_stream_row(
    gw: RunningGateway, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    k = new_key(gw.url)
    with client(gw.url, k["key"]).responses.stream(
        model="compat-chat", input="stream this big"
    ) as s:
        kinds = [event.type for event in s]
        final = s.get_final_response()
    assert final.output_text == "fake: stream this big"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)
    assert fake_upstream[0].requests[-1].path == "/v1/chat/completions"
    row = one_row(gw, k["id"])
    check_row(row, "compat-chat", "vllm", "fake-plain", COMPAT, 3, 4, stream=True)


def test_responses_passthrough_plain_row_has_responses_usage(
    gw: RunningGateway, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    k = new_key(gw.url)
    raw = client(gw.url, k["key"]).responses.with_raw_response.create(
        model="gpt-native", instructions="be brief", input="hello native"
    )
    r = raw.parse()
    assert r.output_text == "fake: hello native" and r.model == "gpt-native"
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (4, 3)
    seen = fake_upstream[0].requests[-1]
    assert seen.path == "/v1/responses" and seen.body is not None
    assert seen.body["model"] == "gpt-native-up"
    row = one_row(gw, k["id"])
    # input_tokens / output_tokens of the Responses API become prompt / completion tokens
    check_row(row, "gpt-native", "fakeai", "gpt-native-up", NATIVE, 4, 3, stream=False)
    assert row["cost"] == pytest.approx((4 * 2500 + 3 * 10000) / 1e6)
    assert row["request_id"] == raw.headers["x-request-id"]


def test_responses_passthrough_stream_row_reads_response_completed(
    gw: RunningGateway, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    k = new_key(gw.url)
    with client(gw.url, k["key"]).responses.stream(model="gpt-native", input="native stream") as s:
        final = s.get_final_response()
    assert final.output_text == "fake: native stream"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 3)
    seen = fake_upstream[0].requests[-1]
    assert seen.path == "/v1/responses" and seen.body is not None and seen.body["stream"] is True
    row = one_row(gw, k["id"])
    check_row(row, "gpt-native", "fakeai", "gpt-native-up", NATIVE, 2, 3, stream=True)


def test_completions_translated_row(
    gw: RunningGateway, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    k = new_key(gw.url)
    raw = client(gw.url, k["key"]).completions.with_raw_response.create(
        model="gpt-test", prompt="say hi there", max_tokens=20
    )
    r = raw.parse()
    assert r.choices[0].text == "fake: say hi there"
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (3, 4)
    assert fake_upstream[0].requests[-1].path == "/v1/chat/completions"
    row = one_row(gw, k["id"])
    check_row(row, "gpt-test", "fakeai", "fake-plain", GPT, 3, 4, stream=False)
    assert row["request_id"] == raw.headers["x-request-id"]


def test_admin_spend_sums_every_endpoint_by_model(gw: RunningGateway) -> None:
    k = new_key(gw.url)
    oc, ac = client(gw.url, k["key"]), claude(gw.url, k["key"])
    oc.embeddings.create(model="emb", input="one two")
    ac.messages.create(model="claude-fake", max_tokens=50, messages=USER)
    ac.messages.create(model="gpt-test", max_tokens=50, messages=USER)
    oc.completions.create(model="gpt-test", prompt="say hi there", max_tokens=20)
    rows_of(gw, k["id"], 4)
    status, _, doc = request(gw.url, "GET", "/admin/spend?group_by=model")
    assert status == 200, doc
    by = {x["model"]: x for x in doc["data"]}
    assert set(by) == {"emb", "claude-fake", "gpt-test"}  # this test's gateway alone
    assert (by["emb"]["requests"], by["emb"]["prompt_tokens"]) == (1, 2)
    assert (by["claude-fake"]["requests"], by["claude-fake"]["completion_tokens"]) == (1, 4)
    assert (by["gpt-test"]["requests"], by["gpt-test"]["prompt_tokens"]) == (2, 6)
    assert by["gpt-test"]["completion_tokens"] == 8
    assert by["emb"]["cost"] == pytest.approx(cost(EMB, 2, 0))
    assert by["claude-fake"]["cost"] == pytest.approx(cost(CLAUDE, 3, 4))
    assert by["gpt-test"]["cost"] == pytest.approx(2 * cost(GPT, 3, 4))


# --- 2. rate limits are the key's, whatever the API -----------------------------------------


def test_rpm_is_shared_across_apis_and_refusals_speak_each_api(gw: RunningGateway) -> None:
    k = new_key(gw.url, rpm=2)
    oc, ac = client(gw.url, k["key"]), claude(gw.url, k["key"])
    assert oc.embeddings.create(model="emb", input="hello").usage.prompt_tokens == 1
    msg = ac.messages.create(model="claude-fake", max_tokens=50, messages=USER)
    assert msg.content[0].type == "text" and msg.content[0].text == "fake: hello big world"

    # The third call, on a third API, is over the key's 2 requests a minute.
    with pytest.raises(openai.RateLimitError) as oe:
        oc.responses.create(model="gpt-native", input="hello native")
    assert oe.value.status_code == 429 and oe.value.code == "rate_limit_exceeded"
    assert int(oe.value.response.headers["retry-after"]) >= 1

    # /v1/messages refuses in Anthropic's shape.
    with pytest.raises(anthropic.RateLimitError) as ae:
        ac.messages.create(model="claude-fake", max_tokens=50, messages=USER)
    assert ae.value.status_code == 429
    body: Any = ae.value.body
    assert body["type"] == "error" and set(body) == {"type", "error"}
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert "requests per min (RPM): Limit 2" in body["error"]["message"]
    assert int(ae.value.response.headers["retry-after"]) >= 1

    # /v1/embeddings refuses in OpenAI's shape.
    status, headers, doc = request(
        gw.url, "POST", "/v1/embeddings", {"model": "emb", "input": "x"}, key=k["key"]
    )
    assert status == 429, doc
    assert set(doc) == {"error"}
    err = doc["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert set(err) >= {"message", "type", "param", "code"}
    assert headers["retry-after"].isdigit() and int(headers["retry-after"]) >= 1

    # Two calls reached upstream; the three refusals are rows that cost nothing.
    rows = rows_of(gw, k["id"], 5)
    assert sorted(r["status"] for r in rows) == [200, 200, 429, 429, 429]
    assert all(r["cost"] == 0 and r["prompt_tokens"] == 0 for r in rows if r["status"] == 429)
    assert {r["model"] for r in rows if r["status"] == 200} == {"emb", "claude-fake"}


# --- 3. model access ------------------------------------------------------------------------


def test_a_key_limited_to_one_model_is_refused_others_on_every_api(
    gw: RunningGateway, fake_anthropic_upstream: tuple[Any, str]
) -> None:
    k = new_key(gw.url, models=["gpt-test"])
    oc, ac = client(gw.url, k["key"]), claude(gw.url, k["key"])
    n = len(fake_anthropic_upstream[0].requests)

    with pytest.raises(anthropic.PermissionDeniedError) as ae:
        ac.messages.create(model="claude-fake", max_tokens=10, messages=USER)
    assert ae.value.status_code == 403
    body: Any = ae.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "permission_error"
    assert body["error"]["code"] == "model_not_allowed"
    assert "claude-fake" in body["error"]["message"]
    assert len(fake_anthropic_upstream[0].requests) == n  # never reached upstream

    with pytest.raises(openai.PermissionDeniedError) as oe:
        oc.embeddings.create(model="emb", input="hello")
    assert oe.value.status_code == 403 and oe.value.code == "model_not_allowed"
    err: Any = oe.value.body
    assert err["param"] == "model"

    # The allowed model works on /v1/messages (translated), and /v1/models lists only it.
    ok = ac.messages.create(model="gpt-test", max_tokens=10, messages=USER)
    assert ok.content[0].type == "text" and ok.content[0].text == "fake: hello big world"
    assert [m.id for m in oc.models.list()] == ["gpt-test"]
    with pytest.raises(openai.NotFoundError):
        oc.models.retrieve("claude-fake")


# --- 4. budgets reserve the worst case ------------------------------------------------------


def budget_left(gw: RunningGateway, key: str) -> float:
    status, _, doc = request(gw.url, "GET", "/v1/key/info", key=key)
    assert status == 200, doc
    return float(doc["budget"]["remaining"])


def test_messages_worst_case_over_the_budget_is_refused(
    gw: RunningGateway, fake_anthropic_upstream: tuple[Any, str]
) -> None:
    # claude-dear: $0.001 an output token, input free; $0.01 is ten output tokens.
    k = new_key(gw.url, max_budget=0.01)
    ac = claude(gw.url, k["key"])
    fa = fake_anthropic_upstream[0]
    n = len(fa.requests)

    # max_tokens 11 could cost $0.011: more than the whole budget, refused before upstream.
    with pytest.raises(anthropic.RateLimitError) as ae:
        ac.messages.create(model="claude-dear", max_tokens=11, messages=USER)
    body: Any = ae.value.body
    assert ae.value.status_code == 429 and body["type"] == "error"
    assert body["error"]["code"] == "budget_exceeded"
    assert "$0.011000" in body["error"]["message"]
    assert len(fa.requests) == n
    assert budget_left(gw, k["key"]) == pytest.approx(0.01)

    # max_tokens 5 ($0.005 at worst) fits; it costs its 4 output tokens: $0.004.
    msg = ac.messages.create(model="claude-dear", max_tokens=5, messages=USER)
    assert msg.usage.output_tokens == 4
    wait_until(lambda: budget_left(gw, k["key"]) == pytest.approx(0.006))

    # max_tokens 8 ($0.008) is under max_budget but over what is left of it: refused.
    with pytest.raises(anthropic.RateLimitError) as again:
        ac.messages.create(model="claude-dear", max_tokens=8, messages=USER)
    assert again.value.body["error"]["code"] == "budget_exceeded"  # type: ignore[index]

    # Also for a passed-through stream, refused before any event.
    status, _, doc = request(
        gw.url,
        "POST",
        "/v1/messages",
        {"model": "claude-dear", "max_tokens": 8, "messages": USER, "stream": True},
        key=k["key"],
        headers={"anthropic-version": "2023-06-01"},
    )
    assert status == 429 and doc["type"] == "error", doc
    assert doc["error"]["code"] == "budget_exceeded"
    assert len(fa.requests) == n + 1  # only the call that fitted reached upstream

    # max_tokens 5 still fits what is left.
    ac.messages.create(model="claude-dear", max_tokens=5, messages=USER)
    rows = rows_of(gw, k["id"], 5)
    billed = [r for r in rows if r["status"] == 200]
    assert len(billed) == 2
    assert sum(r["cost"] for r in rows) == pytest.approx(0.008)
    assert all(r["completion_tokens"] == 4 for r in billed)
    wait_until(lambda: budget_left(gw, k["key"]) == pytest.approx(0.002))


def test_a_per_request_price_bills_and_budgets_images_and_speech(gw: RunningGateway) -> None:
    k = new_key(gw.url, max_budget=0.1)
    c = client(gw.url, k["key"])
    r = c.images.generate(model="img", prompt="a cat", n=2)
    assert len(r.data or []) == 2
    with c.audio.speech.with_streaming_response.create(
        model="tts", input="hello", voice="alloy"
    ) as speech:
        assert speech.read().startswith(b"ID3")
    rows = rows_of(gw, k["id"], 2)
    assert [(row["model"], row["status"]) for row in rows] == [("img", 200), ("tts", 200)]
    assert rows[0]["cost"] == pytest.approx(0.08)  # two images at $0.04
    assert rows[1]["cost"] == pytest.approx(0.015)
    # $0.005 is left: two more images ($0.08 at worst) cannot be covered.
    with pytest.raises(openai.RateLimitError) as info:
        c.images.generate(model="img", prompt="a cat", n=2)
    body: Any = info.value.body
    assert body["code"] == "budget_exceeded"
