"""Condensation's pure parts: what is older, the summariser request, truncation, the cache."""

from __future__ import annotations

from llm_proxy import errors as E
from llm_proxy.config.schema import CondensationConfig
from llm_proxy.routing import condense

SYS = {"role": "system", "content": "be brief"}
U1 = {"role": "user", "content": "first question " * 10}
A1 = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}],
}
T1 = {"role": "tool", "tool_call_id": "c1", "content": "found x"}
A2 = {"role": "assistant", "content": [{"type": "text", "text": "answer one"}]}
U2 = {"role": "user", "content": "second question"}
T2 = {"role": "tool", "tool_call_id": "c2", "content": "pending"}


def test_split_keeps_leading_system_and_everything_from_the_last_user_message() -> None:
    assert condense.split([SYS, U1, A1, T1, A2, U2]) == ([SYS], [U1, A1, T1, A2], [U2])
    assert condense.split([SYS, U1, A2, U2, A1, T2]) == ([SYS], [U1, A2], [U2, A1, T2])
    assert condense.split([U2]) == ([], [], [U2])
    assert condense.split([SYS, U2]) == ([SYS], [], [U2])


def test_transcript_and_adaptive_max_tokens() -> None:
    text = condense.transcript([U1, A1, T1, A2])
    assert text.splitlines() == [
        "user: " + ("first question " * 10).strip(),
        'assistant: [calls lookup({"q":"x"})]',
        "tool: found x",
        "assistant: answer one",
    ]
    cfg = CondensationConfig(max_tokens_default=40, adaptive_factor=0.1)
    ask = condense.summary_request("summ", [U1, A1, T1, A2], cfg)
    assert ask["model"] == "summ" and ask["stream"] is False
    assert ask["messages"][0]["content"] == condense.SUMMARY_PROMPT
    assert ask["messages"][1]["content"] == text
    assert ask["max_tokens"] == min(int(len(text) * 0.1), 40)
    assert condense.summary_request("s", [U2], cfg)["max_tokens"] == 16  # a floor


def test_with_summary_and_truncated() -> None:
    body = {"model": "m", "temperature": 0, "messages": [SYS, U1, A1, T1, A2, U2]}
    out = condense.with_summary(body, "they asked about x")
    assert out["temperature"] == 0
    assert out["messages"] == [
        SYS,
        {"role": "system", "content": "Summary of the earlier conversation: they asked about x"},
        U2,
    ]
    cut = condense.truncated(body)
    assert cut is not None and cut["messages"][0] == SYS and cut["messages"][-1] == U2
    assert U1 not in cut["messages"]  # the big oldest turn went first
    assert condense.truncated({"model": "m", "messages": [SYS, U2]}) is None


def test_is_context_error() -> None:
    cfg = CondensationConfig()
    assert condense.is_context_error(E.ContextLengthExceededError("x"), cfg)
    assert condense.is_context_error(
        E.InvalidRequestError("This model's maximum context length is 8192 tokens"), cfg
    )
    assert condense.is_context_error(E.InvalidRequestError("prompt is too long: 300000"), cfg)
    assert not condense.is_context_error(E.InvalidRequestError("bad temperature"), cfg)
    assert not condense.is_context_error(E.UpstreamError("maximum context length"), cfg)  # 502


def test_summary_cache_ttl_and_bound() -> None:
    c = condense.SummaryCache()
    key = condense.cache_key([U1, A1])
    assert key == condense.cache_key([dict(U1), dict(A1)]) != condense.cache_key([U1])
    c.put(key, "s", now=0.0, ttl=10)
    assert c.get(key, 9.9) == "s" and c.get(key, 10.1) is None
    c.put("off", "s", now=0.0, ttl=0)
    assert c.get("off", 0.0) is None
    for i in range(1100):
        c.put(str(i), "x", now=0.0, ttl=100)
    assert c.get("0", 1.0) is None and c.get("1099", 1.0) == "x"


def test_transcript_tolerates_odd_tool_calls() -> None:
    odd = {"role": "assistant", "content": None, "tool_calls": [{"function": None}, "x", {}]}
    assert condense.transcript([odd]) == "assistant:"
