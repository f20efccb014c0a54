"""OpenAI chat-completions wire format: to_upstream, from_upstream, from_upstream_chunk, errors.

Pure functions over bytes and dicts: no network, no clock, no settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.formats.sse import DONE, encode, is_simple, payloads

PATH = "/chat/completions"  # appended to the provider's base URL

# Key shapes of the providers we route to (OpenAI/Anthropic sk-, Groq gsk_, xAI xai-,
# Perplexity pplx-, Google AIza, generic key-/Bearer). The provider's own key is also masked
# literally (see `redact`).
_SECRETISH = re.compile(rb"(sk-|sk_|gsk_|xai-|pplx-|AIza|key-|Bearer\s+)[A-Za-z0-9_\-\.\*]{6,}")


@dataclass(slots=True)
class StreamState:
    """Carried from chunk to chunk of one stream."""

    public_model: str
    client_wants_usage: bool
    usage: dict[str, Any] | None = None
    done: bool = False  # [DONE] was seen
    chunks: int = 0
    # The last two payloads: a finish_reason there means a stream that only lacks [DONE].
    prev: bytes = b""
    last: bytes = b""
    # `"model":"<name>"` as the client must see it, and as the upstream writes it (learned).
    public_key: bytes = b""
    upstream_key: bytes = b""

    def __post_init__(self) -> None:
        self.public_key = b'"model":' + orjson.dumps(self.public_model)

    def finished(self) -> bool:
        """Whether a finish_reason was seen at the end of the stream."""
        return any(
            b'"finish_reason":"' in d or b'"finish_reason": "' in d for d in (self.prev, self.last)
        )

    def learn_upstream_key(self, data: bytes) -> bytes:
        """The upstream's `"model":"..."` bytes (first seen), e.g. a dated snapshot name."""
        if not self.upstream_key:
            m = _MODEL_KEY.search(data)
            if m:
                self.upstream_key = m.group(0)
        return self.upstream_key


# `"model":"..."` in compact JSON. A bare `":"` cannot occur inside a JSON string (quotes in
# strings are escaped), so this never matches text inside content.
_MODEL_KEY = re.compile(rb'"model":"(?:[^"\\]|\\.)*"')


def new_stream_state(public_model: str, client_wants_usage: bool, created: int = 0) -> StreamState:
    return StreamState(public_model=public_model, client_wants_usage=client_wants_usage)


def to_upstream(
    body: dict[str, Any], upstream_model: str, params: dict[str, Any], stream: bool
) -> bytes:
    """The client body with the upstream model id; deployment params fill what the client left out."""
    out = {**params, **body} if params else dict(body)
    out["model"] = upstream_model
    if stream:
        # Always ask for usage so the gateway can account; the extra chunk is dropped later.
        so = out.get("stream_options")
        if not (isinstance(so, dict) and so.get("include_usage")):
            out["stream_options"] = {**(so if isinstance(so, dict) else {}), "include_usage": True}
    return orjson.dumps(out)


def from_upstream(
    raw: bytes, public_model: str, created: int = 0
) -> tuple[bytes, dict[str, Any] | None]:
    """(body for the client, usage) from an upstream chat.completion (which has its own `created`)."""
    doc = load_object(raw)
    usage = doc.get("usage")
    if doc.get("model") != public_model:
        doc["model"] = public_model
        raw = orjson.dumps(doc)
    return raw, usage if isinstance(usage, dict) else None


def load_object(raw: bytes) -> dict[str, Any]:
    """An upstream response body that must be a JSON object, or a 502 saying what was wrong."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise E.UpstreamError("The upstream provider returned invalid JSON.") from e
    if not isinstance(doc, dict):
        raise unexpected_body()
    return doc


def unexpected_body() -> E.UpstreamError:
    return E.UpstreamError("The upstream provider returned an unexpected body.")


def _models_are_public(data: bytes, state: StreamState) -> bool:
    return data.count(b'"model"') == data.count(state.public_key)


def from_upstream_chunk(data: bytes, state: StreamState) -> bytes | None:
    """One upstream SSE data payload -> the payload for the client (None: drop the event)."""
    state.chunks += 1
    if data == b"[DONE]":
        state.done = True
        return data
    state.prev, state.last = state.last, data
    if not _USAGE_OBJECT.search(data) and _models_are_public(data, state):
        return data
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data  # not ours to judge: pass it on untouched
    if not isinstance(doc, dict):
        return data
    changed = False
    if isinstance(doc.get("usage"), dict):
        state.usage = doc["usage"]
        if not state.client_wants_usage:
            if not doc.get("choices"):
                return None  # the usage-only chunk the client did not ask for
            doc["usage"] = None
            changed = True
    if "model" in doc and doc["model"] != state.public_model:
        doc["model"] = state.public_model
        changed = True
    return orjson.dumps(doc) if changed else data


_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def from_upstream_events(segment: bytes, state: StreamState) -> bytes:
    """A segment of complete upstream SSE events -> the SSE bytes for the client.

    Fast path: when every event is one `data:` line and every `"model"` key can be rewritten
    byte-wise, the events before the first usage object are relayed with one replace() (no
    per-event work). The rest goes event by event through from_upstream_chunk.
    """
    m = _USAGE_OBJECT.search(segment)
    if m is None:
        head, rest = segment, b""
    else:
        cut = segment.rfind(b"\n\n", 0, m.start())
        head, rest = (segment[: cut + 2], segment[cut + 2 :]) if cut >= 0 else (b"", segment)
    out = _relay_simple(head, state) if head else b""
    if out is None:
        out, rest = b"", segment
    if rest:
        kept = [p for d in payloads(rest) if (p := from_upstream_chunk(d, state)) is not None]
        if kept:
            out += frame(kept)
    return out


def _relay_simple(segment: bytes, state: StreamState) -> bytes | None:
    """The segment relayed byte-wise, or None when it needs event-by-event treatment."""
    n = is_simple(segment)
    if not n:
        return None
    out = segment
    keys = segment.count(b'"model"')
    if keys and keys != segment.count(state.public_key):
        upstream = state.learn_upstream_key(segment)
        if not upstream or keys != segment.count(upstream):
            return None
        out = segment.replace(upstream, state.public_key)
    state.chunks += n
    if segment.endswith(b"data: [DONE]\n\n"):
        state.done = True
    state.prev, state.last = state.last, segment
    return out


def finish_stream(state: StreamState, leftover: list[bytes]) -> bytes:
    """At upstream EOF: a complete final event, [DONE], or an error event (never silence).

    `leftover` holds the data of an event the body ended in without its blank line.
    """
    tail = b""
    for data in leftover:
        if data != b"[DONE]" and not is_json(data):
            # Half an event: drop it. After a finish_reason only the usage chunk can be lost.
            return tail + (DONE if state.finished() else stream_error(truncated()))
        out = from_upstream_chunk(data, state)
        if out is not None:
            tail += frame([out])
    if state.done:
        return tail
    return tail + (DONE if state.finished() else stream_error(truncated()))


def finish_events(
    state: Any,
    leftover: list[bytes],
    handle: Callable[[bytes, Any], list[bytes] | None],
    end: Callable[[Any], list[bytes]],
) -> bytes:
    """finish_stream for formats with an explicit end event (Anthropic, Cohere).

    `handle` turns a leftover payload into OpenAI payloads (None: not usable); `end` gives the
    closing payloads once a finish reason went out (`state.finish`), so a stream that lost only
    its end event still ends cleanly; otherwise it ends with the truncation error.
    """
    if state.done:
        return b""
    out: list[bytes] = []
    for data in leftover:
        got = handle(data, state)
        if got is None:
            break
        out.extend(got)
    if not state.done:
        out.extend(end(state) if state.finish else [truncated().to_json()])
    return frame(out) if out else b""


# --- reading chat answers (for the inbound translators) ------------------------------


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def first_choice(choices: Any) -> dict[str, Any] | None:
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers answer with text parts
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def reasoning_of(d: dict[str, Any]) -> str:
    value = d.get("reasoning_content") or d.get("reasoning")
    return value if isinstance(value, str) else ""


def tool_calls_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        return [c for c in calls if isinstance(c, dict)]
    legacy = message.get("function_call")  # the deprecated single-call form
    return [{"function": legacy}] if isinstance(legacy, dict) else []


def usage_totals(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """A chat usage object with integer prompt and completion tokens and a total; None stays
    None. A non-numeric count from the upstream raises ValueError (the translators' callers
    turn that into a 502)."""
    if usage is None:
        return None
    out = dict(usage)
    prompt = int(out.get("prompt_tokens") or 0)
    completion = int(out.get("completion_tokens") or 0)
    out.update(prompt_tokens=prompt, completion_tokens=completion)
    out.setdefault("total_tokens", prompt + completion)
    return out


def is_json(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def truncated() -> E.UpstreamError:
    return E.UpstreamError(
        "The upstream stream ended before the response was complete.",
        code="upstream_stream_truncated",
    )


def stream_error(err: E.GatewayError) -> bytes:
    """An OpenAI-style error event: how a stream that already started reports a failure."""
    return encode(err.to_json())


def frame(payloads: list[bytes]) -> bytes:
    """SSE framing for a batch of payloads: `data: <p>` and a blank line each."""
    lines = [p.replace(b"\n", b"\ndata: ") if b"\n" in p else p for p in payloads]
    return b"data: " + b"\n\ndata: ".join(lines) + b"\n\n"


def redact(text: bytes, secrets: tuple[bytes, ...] = ()) -> bytes:
    """Mask the given secrets and anything shaped like a key before text reaches a client or log."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, b"***")
    return _SECRETISH.sub(rb"\1***", text)


_BY_STATUS: dict[int, type[E.GatewayError]] = {
    400: E.InvalidRequestError,
    404: E.NotFoundError,
    408: E.UpstreamTimeoutError,
    413: E.RequestTooLargeError,
    422: E.InvalidRequestError,
    429: E.RateLimitError,
    503: E.ServiceUnavailableError,
    504: E.UpstreamTimeoutError,
}

_CONTEXT_MARKERS = ("context_length_exceeded", "maximum context length", "context window")


def from_upstream_error(
    status: int,
    raw: bytes,
    headers: dict[str, str],
    client_key_forwarded: bool = False,
    exact_status: bool = False,
    secrets: tuple[bytes, ...] = (),
) -> E.GatewayError:
    """An upstream error body and status -> the GatewayError the client should see."""
    return error_from(map_error, status, raw, headers, client_key_forwarded, exact_status, secrets)


ErrorMapper = Callable[[int, bytes, dict[str, str], bool], E.GatewayError]


def error_from(
    mapper: ErrorMapper,
    status: int,
    raw: bytes,
    headers: dict[str, str],
    client_key_forwarded: bool,
    exact_status: bool,
    secrets: tuple[bytes, ...],
) -> E.GatewayError:
    """What every format's from_upstream_error does around its own `mapper`.

    `secrets` (the credentials sent upstream) are masked wherever the upstream echoed them; with
    `exact_status` (the mock provider) the client gets exactly the status that was asked for.
    """
    err = mapper(status, redact(raw[:4000], secrets), headers, client_key_forwarded or exact_status)
    if exact_status:
        err.status = status
    return err


def map_error(
    status: int, raw: bytes, headers: dict[str, str], client_key_forwarded: bool
) -> E.GatewayError:
    message, code, param, etype = _parse_error(raw)
    if not message:
        message = f"The upstream provider answered HTTP {status}."
    extra: dict[str, str] = {}
    retry_after = headers.get("retry-after") or headers.get("Retry-After")
    if retry_after:
        extra["Retry-After"] = retry_after
    low = message.lower()
    if status == 400 and (
        code == "context_length_exceeded" or any(m in low for m in _CONTEXT_MARKERS)
    ):
        return E.ContextLengthExceededError(message, param=param or "messages")
    if status in (401, 403):
        if client_key_forwarded:
            auth_cls: type[E.GatewayError] = (
                E.AuthenticationError if status == 401 else E.PermissionDeniedError
            )
            return auth_cls(message, param=param, code=code)
        # Our own provider credentials were refused: not the client's fault, so not a 401.
        return E.UpstreamError(
            f"The upstream provider refused the gateway's credentials (HTTP {status}).",
            code="upstream_auth_failed",
        )
    cls = _BY_STATUS.get(status)
    if cls is None:
        other: type[E.GatewayError] = (
            E.UpstreamError if status >= 500 or status < 400 else E.InvalidRequestError
        )
        err = other(message, param=param, code=code or "upstream_error", headers=extra)
        if 400 <= status < 500:
            err.status = status
        return err
    err = cls(message, param=param, code=code or cls.code, headers=extra)
    if etype and cls in (E.InvalidRequestError, E.NotFoundError):
        err.type = etype
    return err


def _parse_error(raw: bytes) -> tuple[str, str | None, str | None, str | None]:
    text = raw
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text.decode("utf-8", "replace").strip()[:500], None, None, None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, str):
        return err[:500], None, None, None
    if not isinstance(err, dict):
        msg = doc.get("message") or doc.get("detail") if isinstance(doc, dict) else None
        return (str(msg)[:500] if msg else ""), None, None, None

    def s(v: Any) -> str | None:
        return str(v) if v is not None else None

    return (
        str(err.get("message") or "")[:2000],
        s(err.get("code")),
        s(err.get("param")),
        s(err.get("type")),
    )
