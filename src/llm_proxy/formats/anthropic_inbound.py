"""Anthropic Messages served inbound: `/v1/messages` for Anthropic clients, OpenAI-format upstreams.

The mirror of `anthropic_messages` (which sends OpenAI chat requests to Anthropic). Here an
Anthropic SDK client calls the gateway and the upstream speaks OpenAI chat completions:
`validate` -> `to_chat` -> send -> `from_chat` (or `StreamTranslator` per chunk) -> client.
Pure functions over dicts and bytes: no network, no clock, no settings.

Sources (shapes, field names and values):
  Messages API (request, Message object)  https://docs.anthropic.com/en/api/messages
  Streaming messages (event order)        https://docs.anthropic.com/en/docs/build-with-claude/streaming
  Tool use (tool_use / tool_result)       https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use
  Vision (base64 / url image sources)     https://docs.anthropic.com/en/docs/build-with-claude/vision
  PDF support (document blocks)           https://docs.anthropic.com/en/docs/build-with-claude/pdf-support
  Extended thinking                       https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
  Errors (status -> error type, shape)    https://docs.anthropic.com/en/api/errors
  Count tokens                            https://docs.anthropic.com/en/api/messages-count-tokens
  OpenAPI spec                            ../shared/specs/anthropic-hosted_spec.json
  The `anthropic` SDK's lib/streaming/_messages.py (accumulate_event), the authority on what a
  stream must look like for `client.messages.stream(...)`.

Decisions:
- Document blocks: a base64 PDF becomes an OpenAI `file` part (file_data data: URL, filename from
  the block title or "document.pdf"); a plain-text source becomes a text part. URL PDFs, Files API
  ids and content sources are refused (code "unsupported_content"): OpenAI file parts take data only.
- Images and documents inside a tool_result cannot ride in a `tool` message (text only there), so
  they are moved into the user message that follows the tool messages.
- Usage: Anthropic's `input_tokens` excludes cache reads, OpenAI's `prompt_tokens` includes them,
  so input_tokens = prompt_tokens - cached_tokens and cache_read_input_tokens = cached_tokens.
- Tool call arguments that are not a JSON object (non-streaming) are kept as
  {"_raw_arguments": "<the text>"} rather than dropped; empty arguments become {}.
- A finish_reason of "stop" (or none) on a turn that made tool calls is reported as "tool_use"
  (some OpenAI-compatible servers say "stop"), so Anthropic tool loops keep going.
- tool_choice (and disable_parallel_tool_use) is sent only when tools are.
- thinking {"type": "adaptive"} is accepted and leaves reasoning effort to the upstream default.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.formats import openai_chat
from llm_proxy.formats.anthropic_inbound_checks import validate
from llm_proxy.formats.checks import invalid as _invalid
from llm_proxy.formats.checks import is_int as _is_int

_MODEL_MAX = 256
_ROLES = ("user", "assistant")
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}  # "tool" names a function
_THINKING_TYPES = ("enabled", "disabled", "adaptive")
_STOP = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
    "function_call": "tool_use", "content_filter": "refusal",
}  # fmt: skip
_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 503: "overloaded_error", 504: "timeout_error",
    529: "overloaded_error",
}  # fmt: skip
# count_tokens_estimate: like OpenAI's cookbook count, 3 tokens wrap each message and each tool,
# 3 more prime the reply; an image or binary document counts as a flat 1,600 tokens (Anthropic's
# estimate for a full-size ~1.15 megapixel image) since its pixels are not decoded here.
_PER_MESSAGE = 3
_PER_REQUEST = 3
_MEDIA_TOKENS = 1600
_ENCODING = "o200k_base"


# --- requests -------------------------------------------------------------------------------


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A validated Anthropic Messages request -> an OpenAI chat-completions request body."""
    messages = _system_messages(body.get("system"))
    for i, m in enumerate(body["messages"]):
        where = f"messages[{i}]"
        if m["role"] == "user":
            messages.extend(_user_messages(m["content"], where))
        else:
            messages.append(_assistant_message(m["content"], where))
    out: dict[str, Any] = {"model": body["model"], "messages": messages}
    out["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        out["user"] = user
    _tools(out, body)
    effort = _effort(body.get("thinking"))
    if effort is not None:
        out["reasoning_effort"] = effort
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _system_messages(system: Any) -> list[dict[str, Any]]:
    if isinstance(system, list):
        system = "\n\n".join(b["text"] for b in system if b.get("text"))
    return [{"role": "system", "content": system}] if system else []


def _unsupported(what: str, where: str) -> E.InvalidRequestError:
    message = f"{what} is not supported when the upstream is an OpenAI-compatible server."
    return _invalid(message, where, "unsupported_content")


def _user_messages(content: str | list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """One user turn -> its tool results as `tool` messages, then the rest as one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        if block["type"] == "tool_result":
            message, media = _tool_message(block, at)
            out.append(message)
            parts.extend(media)
        else:
            parts.append(_user_part(block, at))
    if parts:
        only_text = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if only_text else parts})
    return out


def _user_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": block["text"]}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _image_url(block["source"], where)}}
    if kind == "document":
        return _document_part(block, where)
    raise _unsupported(f"Content block type {kind!r}", f"{where}.type")


def _image_url(source: dict[str, Any], where: str) -> str:
    if source["type"] == "base64":
        return f"data:{source['media_type']};base64,{source['data']}"
    if source["type"] == "url":
        return str(source["url"])
    raise _unsupported(f"Image source type {source['type']!r}", f"{where}.source.type")


def _document_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block["source"]
    if source["type"] == "text":
        return {"type": "text", "text": source["data"]}
    if source["type"] == "base64" and source.get("media_type") == "application/pdf":
        data = f"data:application/pdf;base64,{source['data']}"
        name = block.get("title") if isinstance(block.get("title"), str) else None
        return {"type": "file", "file": {"filename": name or "document.pdf", "file_data": data}}
    what = f"A document with a {source['type']!r} source (only base64 PDF or text)"
    raise _unsupported(what, f"{where}.source")


def _tool_message(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the `tool` message, image/document parts that must travel in a user message)."""
    content = block.get("content")
    media: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts = []
        for k, inner in enumerate(content):
            if inner["type"] == "text":
                texts.append(inner["text"])
            else:
                media.append(_user_part(inner, f"{where}.content[{k}]"))
        text = "\n".join(texts)
    else:
        text = content or ""
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}, media


def _assistant_message(content: str | list[dict[str, Any]], where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block["type"]
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            fn = {"name": block["name"], "arguments": orjson.dumps(block["input"]).decode()}
            calls.append({"id": block["id"], "type": "function", "function": fn})
        elif kind not in ("thinking", "redacted_thinking"):  # earlier thinking is not resent
            raise _unsupported(f"Content block type {kind!r}", f"{where}.content[{j}].type")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
        message["content"] = message["content"] or None
    return message


def _tools(out: dict[str, Any], body: dict[str, Any]) -> None:
    functions = []
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") not in (None, "custom"):
            message = (
                f"Server tool {tool['type']!r} needs an Anthropic upstream; "
                "only custom tools work with OpenAI-compatible servers."
            )
            raise _invalid(message, f"tools[{i}]", "unsupported_tool")
        fn: dict[str, Any] = {"name": tool["name"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = tool["input_schema"]
        functions.append({"type": "function", "function": fn})
    if not functions:
        return
    out["tools"] = functions
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return
    kind = choice["type"]
    name = choice.get("name")
    out["tool_choice"] = (
        {"type": "function", "function": {"name": name}} if kind == "tool" else _TOOL_CHOICE[kind]
    )
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


def _effort(thinking: Any) -> str | None:
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens") or 0
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


# --- responses ------------------------------------------------------------------------------


def _message_id(chat_id: Any) -> str:
    text = chat_id if isinstance(chat_id, str) else ""
    return "msg_" + (text.removeprefix("chatcmpl-") or "gateway")


def _stop_reason(finish: Any, made_tool_calls: bool) -> str:
    reason = _STOP.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    return "tool_use" if made_tool_calls and reason == "end_turn" else reason


def _usage(u: dict[str, Any] | None) -> dict[str, int]:
    """OpenAI usage -> Anthropic usage (input_tokens without the cached part)."""
    u = u or {}
    details = u.get("prompt_tokens_details")
    cached = int((details.get("cached_tokens") or 0) if isinstance(details, dict) else 0)
    prompt = int(u.get("prompt_tokens") or 0)
    return {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": int(u.get("completion_tokens") or 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _message(
    id: str, model: str, content: list[dict[str, Any]], stop: str | None
) -> dict[str, Any]:
    """The Message object, without usage."""
    return {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop, "stop_sequence": None,
    }  # fmt: skip


def _tool_input(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        parsed = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": str(raw)}


def from_chat(doc: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion -> the Anthropic Message object (choice 0 only)."""
    choice = openai_chat.first_choice(doc.get("choices")) or {}
    message = openai_chat.as_dict(choice.get("message"))
    content: list[dict[str, Any]] = []
    thinking = openai_chat.reasoning_of(message)
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    text = openai_chat.text_of(message.get("content"))
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else ""
    if text or refusal:
        content.append({"type": "text", "text": text or refusal})
    calls = openai_chat.tool_calls_of(message)
    for n, call in enumerate(calls):
        fn = openai_chat.as_dict(call.get("function"))
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{n}",
                "name": str(fn.get("name") or ""),
                "input": _tool_input(fn.get("arguments")),
            }
        )
    stop = (
        "refusal"
        if refusal and not text
        else _stop_reason(choice.get("finish_reason"), bool(calls))
    )
    usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
    message_id = _message_id(doc.get("id"))
    return {**_message(message_id, model, content, stop), "usage": _usage(usage)}


# --- streams --------------------------------------------------------------------------------


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return (
        b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"
    )


@dataclass(slots=True)
class _Block:
    """The open content block: its kind (text, thinking, tool), index and upstream tool keys."""

    kind: str
    index: int
    tool_index: int = -1
    upstream_id: str | None = None


class StreamTranslator:
    """OpenAI chat.completion.chunk dicts in, Anthropic SSE events out, for one response.

    The event order is Anthropic's: message_start, then per block content_block_start / _delta /
    _stop, then message_delta and message_stop. OpenAI sends finish_reason before the usage chunk,
    so message_delta waits for that chunk (or `finish()`) to carry the real token counts.
    """

    def __init__(self, model: str, message_id: str | None = None) -> None:
        self._model = model
        self._id = message_id
        self._started = False
        self._done = False
        self._next_index = 0  # the next Anthropic block index
        self._open: _Block | None = None
        self._tool_indices: set[int] = set()  # OpenAI tool_calls indices already given a block
        self._tools = 0  # tool_use blocks started
        self._finish: str | None = None  # the upstream finish_reason, once seen
        self._usage: dict[str, Any] | None = None

    @property
    def usage(self) -> dict[str, Any] | None:
        """The OpenAI-shaped usage seen so far (prompt, completion and total tokens)."""
        return openai_chat.usage_totals(self._usage)

    def feed(self, chunk: dict[str, Any]) -> bytes:
        """One parsed chunk -> zero or more SSE events (b"" when there is nothing to say)."""
        if not isinstance(chunk, dict):
            return b""
        has_usage = isinstance(chunk.get("usage"), dict)
        if has_usage:  # kept even after the end, for accounting
            self._usage = dict(chunk["usage"])
        choices = chunk.get("choices")
        if self._done or (not choices and not has_usage):
            return b""
        out = [] if self._started else [self._message_start(chunk)]
        choice = openai_chat.first_choice(choices)
        if choice is not None and self._finish is None:
            out.extend(self._on_choice(choice))
        if self._finish is not None and has_usage:
            out.extend(self._end())
        return b"".join(out)

    def finish(self) -> bytes:
        """The closing events still owed (b"" when already ended); a valid stream even if empty."""
        if self._done:
            return b""
        out = [] if self._started else [self._message_start({})]
        return b"".join([*out, *self._end()])

    def error_event(self, err: E.GatewayError) -> bytes:
        """An `error` event; the stream is over after it (finish() then emits nothing)."""
        self._done = True
        return _event("error", {"error": _error_object(err)})

    def _message_start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        self._id = self._id or _message_id(chunk.get("id"))
        usage = _usage(self._usage)
        usage["output_tokens"] = 0
        message = {**_message(self._id, self._model, [], None), "usage": usage}
        return _event("message_start", {"message": message})

    def _on_choice(self, choice: dict[str, Any]) -> list[bytes]:
        delta = openai_chat.as_dict(choice.get("delta"))
        out: list[bytes] = []
        reasoning = openai_chat.reasoning_of(delta)
        if reasoning:
            out.extend(self._text_delta("thinking", reasoning))
        text = delta.get("content")
        if isinstance(text, str) and text:
            out.extend(self._text_delta("text", text))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                out.extend(self._tool_delta(call))
        finish = choice.get("finish_reason")
        if finish is not None:
            self._finish = str(finish)
            out.extend(self._close())
        return out

    def _start(self, block: _Block, content_block: dict[str, Any]) -> bytes:
        self._open = block
        self._next_index += 1
        return _event("content_block_start", {"index": block.index, "content_block": content_block})

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        index, self._open = self._open.index, None
        return [_event("content_block_stop", {"index": index})]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        assert self._open is not None
        return _event("content_block_delta", {"index": self._open.index, "delta": delta})

    def _text_delta(self, kind: str, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open is None or self._open.kind != kind:
            out = self._close()
            start = {"type": "text", "text": ""}
            if kind == "thinking":
                start = {"type": "thinking", "thinking": "", "signature": ""}
            out.append(self._start(_Block(kind, self._next_index), start))
        delta_type = "text_delta" if kind == "text" else "thinking_delta"
        out.append(self._delta({"type": delta_type, kind: text}))
        return out

    def _continues(self, tool_index: int, call_id: str | None) -> bool:
        """Whether a tool_calls fragment belongs to the open tool_use block."""
        block = self._open
        if block is None or block.kind != "tool" or block.tool_index != tool_index:
            return False
        return call_id is None or block.upstream_id in (None, call_id)

    def _tool_delta(self, call: dict[str, Any]) -> list[bytes]:
        tool_index = call["index"] if _is_int(call.get("index")) else 0
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        fn = openai_chat.as_dict(call.get("function"))
        out: list[bytes] = []
        if not self._continues(tool_index, call_id):
            if call_id is None and tool_index in self._tool_indices:
                return []  # a late fragment of a block already closed: it cannot be reopened
            out = self._close()
            block = _Block("tool", self._next_index, tool_index, call_id)
            name = fn.get("name") if isinstance(fn.get("name"), str) else ""
            start = {"type": "tool_use", "id": call_id or f"toolu_{self._tools}", "name": name}
            out.append(self._start(block, {**start, "input": {}}))
            self._tools += 1
            self._tool_indices.add(tool_index)
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            out.append(self._delta({"type": "input_json_delta", "partial_json": args}))
        return out

    def _end(self) -> list[bytes]:
        out = self._close()
        stop = _stop_reason(self._finish, self._tools > 0)
        usage = _usage(self._usage)
        delta_usage: dict[str, int] = {
            "output_tokens": usage["output_tokens"],
            "input_tokens": usage["input_tokens"],
        }
        if usage["cache_read_input_tokens"]:
            delta_usage["cache_read_input_tokens"] = usage["cache_read_input_tokens"]
        delta = {"stop_reason": stop, "stop_sequence": None}
        out.append(_event("message_delta", {"delta": delta, "usage": delta_usage}))
        out.append(_event("message_stop", {}))
        self._done = True
        return out


# --- errors ---------------------------------------------------------------------------------


def _error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status; unlisted 4xx are invalid_request_error."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def _error_object(err: E.GatewayError) -> dict[str, Any]:
    return {
        "type": _error_type(err.status),
        "message": err.message,
        "param": err.param,
        "code": err.code,
    }


def error_body(err: E.GatewayError) -> bytes:
    """The /v1/messages error body: Anthropic's shape, with OpenAI's param and code kept inside."""
    return orjson.dumps({"type": "error", "error": _error_object(err)})


# --- token counting -------------------------------------------------------------------------


def _approximate(text: str) -> int:
    return (len(text.encode()) + 3) // 4  # ~4 bytes a token, when tiktoken is not installed


@functools.cache
def _counter() -> Callable[[str], int]:
    """The o200k_base token counter, loaded once (offline when TIKTOKEN_CACHE_DIR holds it)."""
    try:
        tiktoken = importlib.import_module("tiktoken")
    except ImportError:
        return _approximate
    encoding = tiktoken.get_encoding(_ENCODING)

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count


def _block_texts(block: dict[str, Any]) -> Iterator[str | None]:
    """The texts a block contributes; None stands for one image or binary document."""
    kind = block.get("type")
    if kind == "text":
        yield str(block.get("text") or "")
    elif kind == "tool_use":
        yield str(block.get("name") or "")
        yield orjson.dumps(block.get("input") or {}).decode()
    elif kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            yield content
        for inner in content if isinstance(content, list) else ():
            if isinstance(inner, dict):
                yield from _block_texts(inner)
    elif kind in ("image", "document"):
        source = openai_chat.as_dict(block.get("source"))
        yield str(source.get("data") or "") if source.get("type") == "text" else None


def _request_texts(body: dict[str, Any]) -> Iterator[str | None]:
    system = body.get("system")
    if isinstance(system, str):
        yield system
    for block in system if isinstance(system, list) else ():
        if isinstance(block, dict):
            yield str(block.get("text") or "")
    for m in body.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            yield content
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict):
                yield from _block_texts(block)
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            yield str(tool.get("name") or "")
            yield str(tool.get("description") or "")
            if tool.get("input_schema") is not None:
                yield orjson.dumps(tool["input_schema"]).decode()


def count_tokens_estimate(body: dict[str, Any]) -> int:
    """An input token estimate for /v1/messages/count_tokens when the upstream is not Anthropic.

    o200k_base tokens of the system prompt, message texts, tool_use names and inputs, tool_result
    texts and tool names, descriptions and schemas; plus 3 tokens per message and per tool, 3 for
    the reply, and a flat 1,600 per image or binary document.
    """
    count = _counter()
    total = _PER_REQUEST
    for text in _request_texts(body):
        total += _MEDIA_TOKENS if text is None else count(text) if text else 0
    total += _PER_MESSAGE * len(body.get("messages") or [])
    total += _PER_MESSAGE * len(body.get("tools") or [])
    return total


__all__ = [
    "StreamTranslator",
    "count_tokens_estimate",
    "error_body",
    "from_chat",
    "to_chat",
    "validate",
]
