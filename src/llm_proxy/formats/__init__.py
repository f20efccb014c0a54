"""Pure translators, one module per wire format; FORMATS maps a format name to its functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_proxy.errors import GatewayError
from llm_proxy.formats import anthropic_messages, bedrock_converse, cohere, gemini, openai_chat
from llm_proxy.formats.sse import SSEDecoder


@dataclass(frozen=True, slots=True)
class WireFormat:
    """The functions a provider adapter exports (see docs/architecture.md)."""

    name: str
    path: str  # appended to the provider's base URL; "{model}" is the upstream model id
    stream_path: str
    to_upstream: Callable[[dict[str, Any], str, dict[str, Any], bool], bytes]
    # (raw, public model, created) -> (OpenAI chat.completion bytes, usage)
    from_upstream: Callable[[bytes, str, int], tuple[bytes, dict[str, Any] | None]]
    # (public model, client wants usage, created) -> the format's StreamState
    new_stream_state: Callable[[str, bool, int], Any]
    from_upstream_events: Callable[[bytes, Any], bytes]
    finish_stream: Callable[[Any, list[bytes]], bytes]
    from_upstream_error: Callable[..., GatewayError]
    # Stream framing: a decoder with segment(chunk) -> complete events and flush() -> leftovers.
    decoder: Callable[[], Any] = SSEDecoder
    stream_content_type: str = "text/event-stream"  # what the upstream must answer a stream with
    # What the formats below need beyond the chat wire formats (endpoints/ builds them):
    # whether translated events carry something the client would see (None: the OpenAI check),
    has_content: Callable[[bytes], bool] | None = None
    # the event that ends a started stream with an error (None: an OpenAI error event),
    stream_error: Callable[[GatewayError, Any], bytes] | None = None
    # the head of a relayed stream (None: the upstream's own content-type, for raw bytes),
    stream_headers: tuple[tuple[bytes, bytes], ...] | None = (
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    )
    # and the content-type of a plain answer (None: the upstream's own).
    content_type: bytes | None = b"application/json"
    # A stream that cannot carry an error event (audio) ends a failure by cutting the
    # connection, without the final chunk, so the client sees it was cut.
    abort_on_failure: bool = False


def _of(name: str, module: Any) -> WireFormat:
    return WireFormat(
        name=name,
        path=module.PATH,
        stream_path=getattr(module, "STREAM_PATH", module.PATH),
        to_upstream=module.to_upstream,
        from_upstream=module.from_upstream,
        new_stream_state=module.new_stream_state,
        from_upstream_events=module.from_upstream_events,
        finish_stream=module.finish_stream,
        from_upstream_error=module.from_upstream_error,
        decoder=getattr(module, "DECODER", SSEDecoder),
        stream_content_type=getattr(module, "STREAM_CONTENT_TYPE", "text/event-stream"),
    )


FORMATS: dict[str, WireFormat] = {
    "openai": _of("openai", openai_chat),
    "anthropic": _of("anthropic", anthropic_messages),
    "gemini": _of("gemini", gemini),
    "bedrock": _of("bedrock", bedrock_converse),
    "cohere": _of("cohere", cohere),
}

__all__ = ["FORMATS", "WireFormat"]
