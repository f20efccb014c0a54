"""Context condensation (seed 003): on a context-length error, summarise the older messages.

Pure functions over chat bodies, plus a small TTL cache of summaries keyed by content hash.
The kept part of a conversation is its leading system messages and everything from the last
user message on (so a pending tool result stays with its call); what lies between is "older".
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.config.schema import CondensationConfig

SUMMARY_PROMPT = (
    "Summarise the conversation below for an assistant that will continue it. Keep every "
    "name, number, fact, decision, constraint and open question; drop pleasantries. "
    "Answer with the summary only."
)
_CACHE_MAX = 1024


def is_context_error(err: E.GatewayError, cfg: CondensationConfig) -> bool:
    """A context-length error: by its type, or by seed 003's keywords in a 400's message."""
    if isinstance(err, E.ContextLengthExceededError):
        return True
    if err.status != 400:
        return False
    text = f"{err.code or ''} {err.message}".lower()
    return any(k.lower() in text for k in cfg.error_keywords)


def split(messages: list[dict[str, Any]]) -> tuple[list[Any], list[Any], list[Any]]:
    """(leading system messages, older messages, the kept tail from the last user message)."""
    head = 0
    while head < len(messages) and messages[head].get("role") in ("system", "developer"):
        head += 1
    last_user = next(
        (i for i in range(len(messages) - 1, head - 1, -1) if messages[i].get("role") == "user"),
        len(messages) - 1,
    )
    last_user = max(last_user, head)
    return messages[:head], messages[head:last_user], messages[last_user:]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def transcript(messages: list[dict[str, Any]]) -> str:
    lines = []
    for m in messages:
        text = _text(m.get("content"))
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            fns = [c.get("function") for c in calls if isinstance(c, dict)]
            text += " " + " ".join(
                f"[calls {f.get('name')}({f.get('arguments')})]" for f in fns if isinstance(f, dict)
            )
        lines.append(f"{m.get('role', 'user')}: {text.strip()}".rstrip())
    return "\n".join(lines)


def cache_key(older: list[dict[str, Any]]) -> str:
    return hashlib.sha256(orjson.dumps(older, option=orjson.OPT_SORT_KEYS)).hexdigest()


def summary_request(
    model: str, older: list[dict[str, Any]], cfg: CondensationConfig
) -> dict[str, Any]:
    """The chat body that asks the summariser; max_tokens adapts to the input (seed 003)."""
    text = transcript(older)
    max_tokens = max(16, min(int(len(text) * cfg.adaptive_factor), cfg.max_tokens_default))
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": SUMMARY_PROMPT},
            {"role": "user", "content": text},
        ],
        "max_tokens": max_tokens,
        "stream": False,
    }


def with_summary(body: dict[str, Any], summary: str) -> dict[str, Any]:
    """The original request with its older messages replaced by one system message."""
    head, _, tail = split(body["messages"])
    note = {"role": "system", "content": f"Summary of the earlier conversation: {summary}"}
    return {**body, "messages": [*head, note, *tail]}


def truncated(body: dict[str, Any]) -> dict[str, Any] | None:
    """The fallback when summarising fails: drop the oldest older messages until the
    conversation is at most half its length in characters (at least one goes). None if there
    is nothing older to drop."""
    head, older, tail = split(body["messages"])
    if not older:
        return None
    size = [len(orjson.dumps(m)) for m in older]
    total = sum(size) + sum(len(orjson.dumps(m)) for m in (*head, *tail))
    cut = 1
    while cut < len(older) and total - sum(size[:cut]) > total / 2:
        cut += 1
    return {**body, "messages": [*head, *older[cut:], *tail]}


class SummaryCache:
    """content hash -> summary, each for `ttl` seconds; bounded, oldest evicted first."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, str]] = {}

    def get(self, key: str, now: float) -> str | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        if hit[0] < now:
            del self._items[key]
            return None
        return hit[1]

    def put(self, key: str, summary: str, now: float, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._items) >= _CACHE_MAX:
            self._items.pop(next(iter(self._items)))
        self._items[key] = (now + ttl, summary)


__all__ = [
    "SummaryCache",
    "cache_key",
    "is_context_error",
    "split",
    "summary_request",
    "truncated",
    "with_summary",
]
