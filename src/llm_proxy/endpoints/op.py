"""Ops: what each deployment is called with for a request of another endpoint than chat.

A chat completion calls every deployment with its provider's chat wire format. Every other
endpoint makes an `Op` per request, which gives each deployment a `Target`: the WireFormat to
build the payload and read the answer with, the URL, and any extra headers. Two kinds of
WireFormat are built here:

- `passthrough`: the client's own request goes upstream as it came (only the model id is
  swapped, when the public name differs), and the answer comes back as it came; usage is read
  on the way for spend. Used where the upstream speaks the client's API natively (Anthropic
  Messages to Anthropic, the Responses API to OpenAI, embeddings and images to OpenAI-style
  servers).
- `translated`: the request goes out through the deployment's chat wire format (any provider),
  and its OpenAI-shaped answer, plain or streamed, is turned into the client's API by an
  `Outbound` (formats/anthropic_inbound.py, formats/openai_responses.py, completions).

Deployments an op has no target on are skipped by the call stage; a model with none left is a
400 `unsupported_endpoint`.
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from llm_proxy import errors as E
from llm_proxy.attempt import event_error
from llm_proxy.formats import WireFormat, openai_chat
from llm_proxy.formats.sse import payloads
from llm_proxy.runtime import Deployment


@dataclass(frozen=True, slots=True)
class Target:
    wire: WireFormat
    url: str
    stream_url: str
    headers: dict[str, str] | None = None


class Op:
    """One request's choice of Target per deployment (cached: attempts ask again)."""

    __slots__ = ("_cache", "_pick", "condensable", "name", "units", "why")

    def __init__(
        self,
        name: str,
        pick: Callable[[Deployment], Target | None],
        condensable: bool = False,
        why: E.GatewayError | None = None,
        units: int = 1,
    ) -> None:
        self.name = name
        self.units = units  # what a per-request price is charged for (images: n)
        self._pick = pick
        self._cache: dict[int, Target | None] = {}
        self.condensable = condensable  # a context-length error may be condensed and retried
        self.why = why  # why some deployments cannot serve it (the error when none can)

    def target(self, d: Deployment) -> Target | None:
        key = id(d)
        if key not in self._cache:
            self._cache[key] = self._pick(d)
        return self._cache[key]

    def able(self, cands: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(c for c in cands if self.target(c.deployment) is not None)

    def unable(self, model: str) -> E.GatewayError:
        if self.why is not None:
            return self.why
        return E.InvalidRequestError(
            f"No deployment of the model '{model}' supports {self.name}.",
            param="model",
            code="unsupported_endpoint",
        )


# --- URLs -----------------------------------------------------------------------------------

_CHAT = "/chat/completions"


def openai_url(d: Deployment, path: str) -> str | None:
    """The URL of another OpenAI endpoint (`/embeddings`, ...) of an OpenAI-format deployment:
    its chat URL with the last `/chat/completions` swapped (keeps Azure's deployment path and
    api-version query). None for other wire formats."""
    if d.provider.format != "openai":
        return None
    url = d.url
    i = url.rfind(_CHAT)
    if i < 0:
        return None
    return url[:i] + path + url[i + len(_CHAT) :]


def with_suffix(url: str, suffix: str) -> str:
    """`suffix` appended to the URL's path (before its query)."""
    base, q, query = url.partition("?")
    return base + suffix + (q + query if q else "")


# --- passthrough ----------------------------------------------------------------------------


@dataclass(slots=True)
class PassState:
    """A passthrough stream: what was learnt on the way (usage, the end event)."""

    public_key: bytes
    usage: dict[str, Any] | None = None
    chunks: int = 0
    done: bool = False
    scratch: dict[str, Any] = field(default_factory=dict)
    secrets: tuple[bytes, ...] = ()  # the provider's credentials, masked in errors we raise


# Reads one stream event's data (usage, the end) into the state.
Watch = Callable[[bytes, "PassState"], None]


_MODEL_KEY = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')


def _model_key(model: str) -> bytes:
    return b'"model":' + orjson.dumps(model)


def _swap_model(raw: bytes, doc: dict[str, Any], model: str) -> bytes:
    if raw and doc.get("model") == model:
        return raw
    return orjson.dumps({**doc, "model": model})


def passthrough(
    raw: bytes,
    doc: dict[str, Any],
    error: Callable[..., E.GatewayError],
    usage_of: Callable[[dict[str, Any]], dict[str, Any] | None],
    watch: Watch | None = None,
    end_error: Callable[[E.GatewayError], bytes] | None = None,
    has_content: Callable[[bytes], bool] | None = None,
    secrets: tuple[bytes, ...] = (),
) -> WireFormat:
    """The client's request as it came (the model id swapped when it differs) and the answer
    as it came (the upstream's model id swapped back for the public one)."""

    def to_upstream(_: dict[str, Any], model: str, params: dict[str, Any], stream: bool) -> bytes:
        return _swap_model(raw, doc, model)

    def from_upstream(body: bytes, public: str, created: int) -> tuple[bytes, Any]:
        out = openai_chat.load_object(body)
        usage = usage_of(out)
        if isinstance(out.get("model"), str) and out["model"] != public:
            body = orjson.dumps({**out, "model": public})
        return body, usage

    def new_state(public: str, wants_usage: bool, created: int) -> PassState:
        return PassState(_model_key(public), secrets=secrets)

    def events(segment: bytes, st: PassState) -> bytes:
        if watch is not None:
            for data in payloads(segment):
                st.chunks += 1
                watch(data, st)
        if b'"model"' in segment and segment.count(b'"model"') != segment.count(st.public_key):
            # Every `"model": "<id>"` key (compact or spaced) says the public name. A quote
            # inside a JSON string is escaped, so text in content or arguments never matches.
            segment = _MODEL_KEY.sub(st.public_key, segment)
        return segment

    def finish(st: PassState, leftover: list[bytes]) -> bytes:
        if st.done or end_error is None:
            return b""
        return end_error(openai_chat.truncated())

    return WireFormat(
        name="passthrough",
        path="",
        stream_path="",
        to_upstream=to_upstream,
        from_upstream=from_upstream,
        new_stream_state=new_state,
        from_upstream_events=events,
        finish_stream=finish,
        from_upstream_error=error,
        has_content=has_content or (lambda out: True),
        stream_error=(lambda err, st: end_error(err)) if end_error is not None else None,
    )


class RawDecoder:
    """Bytes as they come (audio): every chunk is a segment."""

    __slots__ = ()

    def segment(self, chunk: bytes) -> bytes:
        return chunk

    def flush(self) -> list[bytes]:
        return []


def raw(
    build: Callable[[str], bytes],
    error: Callable[..., E.GatewayError],
    usage_of: Callable[[bytes], dict[str, Any] | None] | None = None,
) -> WireFormat:
    """A request built for the upstream model (`build(model)`) whose answer goes back as its
    bytes, under the upstream's own content-type: whole, or (streamed: audio) as they arrive.
    `usage_of` reads a whole answer's usage, where it has one (transcripts)."""

    def to_upstream(_: dict[str, Any], model: str, params: dict[str, Any], stream: bool) -> bytes:
        return build(model)

    def new_state(public: str, wants_usage: bool, created: int) -> PassState:
        return PassState(b"")  # no chunk count: audio bytes are no tokens

    def from_upstream(body: bytes, public: str, created: int) -> tuple[bytes, Any]:
        return body, usage_of(body) if usage_of is not None else None

    return WireFormat(
        name="raw",
        path="",
        stream_path="",
        to_upstream=to_upstream,
        from_upstream=from_upstream,
        new_stream_state=new_state,
        from_upstream_events=lambda segment, st: segment,
        finish_stream=lambda st, leftover: b"",
        from_upstream_error=error,
        decoder=RawDecoder,
        stream_content_type="",  # any content-type is the answer
        has_content=lambda out: True,
        stream_error=lambda err, st: b"",  # nothing can be said inside audio: the body is cut
        stream_headers=None,
        content_type=None,
        abort_on_failure=True,
    )


# --- translated -----------------------------------------------------------------------------


class StreamOut(Protocol):
    """Turns parsed OpenAI chat.completion.chunk objects into another API's stream."""

    def feed(self, chunk: dict[str, Any]) -> bytes: ...
    def finish(self) -> bytes: ...
    def error_event(self, err: E.GatewayError) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Outbound:
    """How OpenAI chat answers become another API's: a plain body, and a stream translator."""

    plain: Callable[[dict[str, Any]], dict[str, Any]]
    stream: Callable[[], StreamOut]
    has_content: Callable[[bytes], bool]


@dataclass(slots=True)
class Composed:
    """A translated stream: the chat format's own state, and the outbound translator."""

    inner: Any
    outer: StreamOut
    secrets: tuple[bytes, ...] = ()

    @property
    def usage(self) -> dict[str, Any] | None:
        u: dict[str, Any] | None = self.inner.usage
        return u

    @property
    def chunks(self) -> int:
        n: int = self.inner.chunks
        return n

    def feed(self, out: bytes) -> bytes:
        """OpenAI SSE bytes (from the chat format) -> the outbound API's events."""
        res = b""
        for data in payloads(out):
            if data == b"[DONE]":
                continue
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            if "error" in doc and "choices" not in doc:
                # Raised, not rendered: before commit the next deployment is tried; after it,
                # relay ends the stream with the outbound API's own error event.
                raise event_error(data, self.secrets)
            with _upstream_fault():
                res += self.outer.feed(doc)
        return res


@contextlib.contextmanager
def _upstream_fault() -> Iterator[None]:
    """A malformed upstream answer the translator trips over is the upstream's failure (502,
    failover), not the gateway's (500)."""
    try:
        yield
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, struct.error) as e:
        raise E.UpstreamError(
            f"The upstream provider returned an answer that could not be read ({type(e).__name__})."
        ) from None


def translated(inner: WireFormat, out: Outbound, secrets: tuple[bytes, ...] = ()) -> WireFormat:
    """`inner` (a chat wire format) with its OpenAI-shaped answers turned into `out`'s API."""

    def from_upstream(raw: bytes, public: str, created: int) -> tuple[bytes, Any]:
        body, usage = inner.from_upstream(raw, public, created)
        with _upstream_fault():
            return orjson.dumps(out.plain(orjson.loads(body))), usage

    def new_state(public: str, wants_usage: bool, created: int) -> Composed:
        return Composed(inner.new_stream_state(public, True, created), out.stream(), secrets)

    def events(segment: bytes, st: Composed) -> bytes:
        got = inner.from_upstream_events(segment, st.inner)
        return st.feed(got) if got else b""

    def finish(st: Composed, leftover: list[bytes]) -> bytes:
        return st.feed(inner.finish_stream(st.inner, leftover)) + st.outer.finish()

    return WireFormat(
        name=f"{inner.name}+translated",
        path=inner.path,
        stream_path=inner.stream_path,
        to_upstream=inner.to_upstream,
        from_upstream=from_upstream,
        new_stream_state=new_state,
        from_upstream_events=events,
        finish_stream=finish,
        from_upstream_error=inner.from_upstream_error,
        decoder=inner.decoder,
        stream_content_type=inner.stream_content_type,
        has_content=out.has_content,
        stream_error=lambda err, st: st.outer.error_event(err),
    )


def chat_target(d: Deployment, out: Outbound) -> Target:
    """The deployment's own chat endpoint, its answers translated by `out`."""
    return Target(translated(d.provider.wire, out, d.provider.secrets), d.url, d.stream_url)


__all__ = [
    "Composed",
    "Op",
    "Outbound",
    "PassState",
    "RawDecoder",
    "Target",
    "chat_target",
    "openai_url",
    "passthrough",
    "raw",
    "translated",
    "with_suffix",
]
