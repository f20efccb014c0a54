"""OpenAI Responses API served over chat completions: `/v1/responses` for OpenAI-format upstreams.

A stateless Responses client (the whole conversation comes as `input`) calls the gateway and the
upstream speaks chat completions: `validate` -> `to_chat` -> send -> `from_chat` (or
`StreamTranslator` per chunk) -> client. Pure: no network, no clock (the caller passes
`created_at`), no settings. One module by request (the brief allowed one file); the stream half
is the natural split if it grows.

Sources (shapes, field names and values):
  Create a response, the response object  https://platform.openai.com/docs/api-reference/responses
  Streaming events (order and payloads)   https://platform.openai.com/docs/api-reference/responses-streaming
  Conversation state (stateless use)      https://platform.openai.com/docs/guides/conversation-state
  OpenAPI spec ../shared/specs/openai-openapi.yaml: CreateResponse, ResponseProperties,
  ModelResponseProperties (temperature 0..2, top_p 0..1; max_output_tokens minimum 16), Response,
  ResponseUsage, ResponseErrorEvent, ResponseFunctionCallArgumentsDoneEvent (carries `name`).
  The `openai` SDK's types/responses/ (e.g. input_tokens_details.cache_write_tokens is required)
  and lib/streaming/responses/_responses.py (response.created first; each item added before its
  deltas and done before response.completed).

Decisions:
- Stateless: `previous_response_id`, `conversation`, `background: true`, `prompt` (a stored
  template) and `item_reference` items need state kept at OpenAI and are refused ("unsupported_
  parameter" / "unsupported_value"), never dropped.
- Built-in and custom tools are refused ("unsupported_tool"): they run inside OpenAI. A function
  tool's `strict` is sent only when given (the Responses default, true, would make chat servers
  reject schemas that are not strict-compatible) and echoed as given.
- Role `developer` becomes `system` (OpenAI treats them alike; many compatible servers know only
  `system`). Reasoning input items are dropped: chat has nowhere to put them.
- Upstream reasoning text (`reasoning_content` / `reasoning`) becomes a reasoning item with one
  `summary_text` part in both modes, streamed as reasoning_summary_part.added / _text.delta /
  _text.done / _part.done: summaries are what Responses clients show.
- Images in a function_call_output cannot ride in a `tool` message (text only): they go in a user
  message after the run of tool messages. `input_image` by file_id is refused (chat image_url
  takes URLs); `input_file` by file_id passes (chat file parts take it); by file_url is refused.
- `metadata` is echoed but not sent (chat takes it only with `store`); `store` is echoed false.
  temperature / top_p echo as sent, null otherwise (the upstream's defaults are unknown);
  `completed_at` is null (no clock).
- finish_reason `length` -> "incomplete" with reason "max_output_tokens", `content_filter` ->
  reason "content_filter"; output items then end "incomplete".
- Streams: function_call items stay open until the finish_reason (chat may interleave parallel
  calls by index); a text or reasoning item closes when other output starts. The terminal event
  waits for the usage chunk (OpenAI sends it after the finish_reason) or finish(). A stream that
  ends without a finish_reason closes as completed.
- error_event sends the API's `error` event (code, message, param) and then `response.failed`
  (error code "rate_limit_exceeded" for 429, else "server_error"; the output so far), so clients
  waiting for a terminal lifecycle event get one; response.created goes first if nothing did.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.formats import openai_chat
from llm_proxy.formats.checks import invalid as _invalid
from llm_proxy.formats.checks import is_int as _is_int
from llm_proxy.formats.openai_responses_checks import (
    MIN_OUTPUT_TOKENS,
    _unsupported,
    validate,
)

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_COPIED = ("temperature", "top_p", "user", "safety_identifier", "prompt_cache_key")


# --- requests -------------------------------------------------------------------------------


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A validated Responses request -> an OpenAI chat-completions request body."""
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    value = body["input"]
    if isinstance(value, str):
        messages.append({"role": "user", "content": value})
    else:
        messages.extend(_input_messages(value))
    if not messages:
        raise _invalid("'input' must contain at least one message.", "input")
    out: dict[str, Any] = {"model": body["model"], "messages": messages}
    if body.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = body["max_output_tokens"]
    for name in _COPIED:
        if body.get(name) is not None:
            out[name] = body[name]
    _tools(out, body)
    _text(out, body.get("text"))
    effort = (body.get("reasoning") or {}).get("effort")
    if effort is not None:
        out["reasoning_effort"] = effort
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _input_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    media: list[dict[str, Any]] = []  # images from tool outputs, owed after the tool messages
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type") or "message"
        if kind != "function_call_output" and media:
            out.append({"role": "user", "content": media})
            media = []
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            _add_call(out, item)
        elif kind == "function_call_output":
            message, parts = _tool_message(item, where)
            out.append(message)
            media.extend(parts)
        elif kind == "item_reference":
            why = "Item references point at stored items; this gateway is stateless: send the item itself."
            raise _unsupported(why, f"{where}.id")
        elif kind != "reasoning":  # earlier reasoning has no place in a chat request
            why = f"Input items of type {kind!r} need an OpenAI upstream; only messages and function calls translate to chat completions."
            raise _unsupported(why, f"{where}.type")
    if media:
        out.append({"role": "user", "content": media})
    return out


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = "system" if item["role"] == "developer" else item["role"]
    content = item["content"]
    if isinstance(content, str):
        return {"role": role, "content": content}
    if role != "user":  # system and assistant turns: text only, as one string
        texts, refusals = [], []
        for j, part in enumerate(content):
            if part["type"] == "refusal":
                refusals.append(part["refusal"])
            elif part["type"] in ("input_text", "output_text"):
                texts.append(part["text"])
            else:
                why = (
                    f"Content of type {part['type']!r} is not allowed in a {item['role']} message."
                )
                raise _unsupported(why, f"{where}.content[{j}].type")
        sep = "" if role == "assistant" else "\n\n"  # one reply's pieces vs separate blocks
        message: dict[str, Any] = {"role": role, "content": sep.join(texts)}
        if refusals and role == "assistant":
            message["refusal"] = "".join(refusals)
        return message
    parts = [_user_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    if len(parts) == 1 and parts[0]["type"] == "text":
        return {"role": role, "content": parts[0]["text"]}
    return {"role": role, "content": parts}


def _user_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    kind = part["type"]
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part["text"]}
    if kind == "input_image":
        if part.get("image_url") is None:
            message = (
                "Images by file_id need an OpenAI upstream; send image_url (a URL or a data: URL)."
            )
            raise _unsupported(message, f"{where}.file_id")
        return {
            "type": "image_url",
            "image_url": {"url": part["image_url"], "detail": part.get("detail") or "auto"},
        }
    if kind == "input_file":
        return _file_part(part, where)
    raise _unsupported(
        f"Content of type {kind!r} is not supported in a user message.", f"{where}.type"
    )


def _file_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    file: dict[str, Any] = {}
    if part.get("file_data") is not None:
        file["file_data"] = part["file_data"]
    elif part.get("file_id") is not None:
        file["file_id"] = part["file_id"]
    else:
        message = "Files by file_url are not supported by chat completions; send file_data."
        raise _unsupported(message, f"{where}.file_url")
    if part.get("filename") is not None:
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


def _add_call(out: list[dict[str, Any]], item: dict[str, Any]) -> None:
    """A function_call item joins the assistant message just before it, or starts one."""
    call = {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        last["content"] = last.get("content") or None
        return
    out.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_message(item: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the `tool` message, image/file parts that must travel in a user message)."""
    output = item["output"]
    if isinstance(output, str):
        return {"role": "tool", "tool_call_id": item["call_id"], "content": output}, []
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    for j, part in enumerate(output):
        converted = _user_part(part, f"{where}.output[{j}]")
        if converted["type"] == "text":
            texts.append(converted["text"])
        else:
            media.append(converted)
    return {"role": "tool", "tool_call_id": item["call_id"], "content": "\n".join(texts)}, media


def _tools(out: dict[str, Any], body: dict[str, Any]) -> None:
    functions = []
    for i, tool in enumerate(body.get("tools") or []):
        if tool["type"] != "function":
            message = f"The {tool['type']!r} tool needs an OpenAI upstream; only function tools work with chat-completions servers."
            raise _unsupported(message, f"tools[{i}].type", "unsupported_tool")
        fn: dict[str, Any] = {"name": tool["name"]}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                fn[key] = tool[key]
        functions.append({"type": "function", "function": fn})
    if not functions:
        return  # chat refuses tool_choice and parallel_tool_calls without tools
    out["tools"] = functions
    if body.get("parallel_tool_calls") is not None:
        out["parallel_tool_calls"] = body["parallel_tool_calls"]
    choice = body.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = _tool_choice(choice)


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    if choice["type"] == "function":
        return {"type": "function", "function": {"name": choice["name"]}}
    if choice["type"] == "allowed_tools":
        tools = []
        for j, tool in enumerate(choice["tools"]):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                message = "Only function tools can be listed in an allowed_tools tool_choice."
                raise _unsupported(message, f"tool_choice.tools[{j}]", "unsupported_tool")
            tools.append({"type": "function", "function": {"name": tool.get("name")}})
        return {"type": "allowed_tools", "allowed_tools": {"mode": choice["mode"], "tools": tools}}
    message = (
        f"tool_choice {choice['type']!r} names a built-in tool, which needs an OpenAI upstream."
    )
    raise _unsupported(message, "tool_choice.type", "unsupported_tool")


def _text(out: dict[str, Any], text: dict[str, Any] | None) -> None:
    if not text:
        return
    if text.get("verbosity") is not None:
        out["verbosity"] = text["verbosity"]
    fmt = text.get("format") or {}
    if fmt.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif fmt.get("type") == "json_schema":
        schema = {"name": fmt["name"], "schema": fmt["schema"]}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        out["response_format"] = {"type": "json_schema", "json_schema": schema}


# --- responses ------------------------------------------------------------------------------


def _new_id() -> str:
    return "resp_" + uuid.uuid4().hex


def _suffix(response_id: str) -> str:
    return response_id.removeprefix("resp_")


def _usage(u: dict[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI chat usage -> Responses usage (None when the upstream sent none)."""
    if u is None:
        return None
    prompt = int(u.get("prompt_tokens") or 0)
    completion = int(u.get("completion_tokens") or 0)
    cached = int(openai_chat.as_dict(u.get("prompt_tokens_details")).get("cached_tokens") or 0)
    reasoning = int(
        openai_chat.as_dict(u.get("completion_tokens_details")).get("reasoning_tokens") or 0
    )
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": int(u.get("total_tokens") or prompt + completion),
    }


def _echo_tools(tools: Any) -> list[dict[str, Any]]:
    keys = ("name", "description", "parameters", "strict")
    return [
        {"type": "function", **{k: tool.get(k) for k in keys}}
        for tool in (tools if isinstance(tools, list) else ())
        if isinstance(tool, dict) and tool.get("type") == "function"
    ]


def _response(
    request: dict[str, Any],
    response_id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """The Response object; the request's settings echoed as the API echoes them."""
    reasoning = openai_chat.as_dict(request.get("reasoning"))
    text = dict(openai_chat.as_dict(request.get("text")))
    text["format"] = text.get("format") or {"type": "text"}
    parallel = request.get("parallel_tool_calls")
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "background": False, "completed_at": None, "error": None, "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"), "max_tool_calls": None,
        "model": request.get("model"), "output": output,
        "parallel_tool_calls": True if parallel is None else parallel,
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": request.get("safety_identifier"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "store": False, "temperature": request.get("temperature"), "text": text,
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": _echo_tools(request.get("tools")), "top_p": request.get("top_p"),
        "truncation": request.get("truncation") or "disabled", "usage": usage,
        "user": request.get("user"), "metadata": request.get("metadata") or {},
    }  # fmt: skip


def _finish(response: dict[str, Any], finish_reason: Any) -> dict[str, Any]:
    """Set status and incomplete_details from the chat finish_reason."""
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    return response


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _reasoning_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"id": item_id, "type": "reasoning", "summary": summary, "status": status}


def _message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "id": item_id, "type": "message", "status": status, "role": "assistant", "content": content
    }  # fmt: skip


def _call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "id": item_id, "type": "function_call", "status": status, "call_id": call_id,
        "name": name, "arguments": arguments,
    }  # fmt: skip


def _arguments(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    return "" if raw is None else orjson.dumps(raw).decode()


def from_chat(doc: dict[str, Any], request: dict[str, Any], created_at: int) -> dict[str, Any]:
    """An OpenAI chat.completion -> the Response object (choice 0 only)."""
    response_id = _new_id()
    suffix = _suffix(response_id)
    choice = openai_chat.first_choice(doc.get("choices")) or {}
    finish = choice.get("finish_reason")
    status = "incomplete" if finish in _INCOMPLETE else "completed"
    message = openai_chat.as_dict(choice.get("message"))
    output: list[dict[str, Any]] = []
    reasoning = openai_chat.reasoning_of(message)
    if reasoning:
        output.append(_reasoning_item(f"rs_{suffix}", reasoning, status))
    content: list[dict[str, Any]] = []
    text = openai_chat.text_of(message.get("content"))
    if text:
        content.append(_text_part(text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "refusal", "refusal": refusal})
    if content:
        output.append(_message_item(f"msg_{suffix}", content, status))
    for n, call in enumerate(openai_chat.tool_calls_of(message)):
        fn = openai_chat.as_dict(call.get("function"))
        call_id = str(call.get("id") or f"call_{suffix}_{n}")
        name = str(fn.get("name") or "")
        output.append(
            _call_item(f"fc_{suffix}_{n}", call_id, name, _arguments(fn.get("arguments")), status)
        )
    usage = _usage(doc["usage"]) if isinstance(doc.get("usage"), dict) else None
    return _finish(_response(request, response_id, created_at, status, output, usage), finish)


# --- streams --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """One output item being streamed: a message, a reasoning item or a function call."""

    kind: str  # "message" | "reasoning" | "function_call"
    index: int  # output_index
    id: str
    parts: list[list[str]] = field(default_factory=list)  # message: [part type, text] each
    text: str = ""  # reasoning summary text
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    done: bool = False

    def render(self, status: str) -> dict[str, Any]:
        if self.kind == "reasoning":
            return _reasoning_item(self.id, self.text, status)
        if self.kind == "function_call":
            call_id = self.call_id or "call_" + self.id.removeprefix("fc_")  # upstream sent none
            return _call_item(self.id, call_id, self.name, self.arguments, status)
        return _message_item(self.id, [_part(kind, text) for kind, text in self.parts], status)


def _part(kind: str, text: str) -> dict[str, Any]:
    return _text_part(text) if kind == "output_text" else {"type": "refusal", "refusal": text}


class StreamTranslator:
    """OpenAI chat.completion.chunk dicts in, Responses API SSE events out, for one response.

    Events: response.created, response.in_progress, then per output item output_item.added,
    its parts and deltas, output_item.done; finally response.completed (or response.incomplete),
    held until OpenAI's usage chunk (sent after the finish_reason chunk) or finish().
    """

    def __init__(
        self, request: dict[str, Any], created_at: int, response_id: str | None = None
    ) -> None:
        self._request = request
        self._created_at = created_at
        self._id = response_id or _new_id()
        self._suffix = _suffix(self._id)
        self._seq = 0
        self._started = False
        self._done = False
        self._items: list[_Item] = []
        self._open: _Item | None = None  # the open message or reasoning item
        self._calls: dict[int, _Item] = {}  # chat tool_calls index -> its function_call item
        self._finish: str | None = None
        self._finished = False  # a finish_reason was seen and the items closed
        self._usage: dict[str, Any] | None = None

    @property
    def usage(self) -> dict[str, Any] | None:
        """The OpenAI chat-shaped usage seen so far (prompt, completion and total tokens)."""
        return openai_chat.usage_totals(self._usage)

    def feed(self, chunk: dict[str, Any]) -> bytes:
        """One parsed chunk -> zero or more SSE events (b"" when there is nothing to say)."""
        if not isinstance(chunk, dict):
            return b""
        has_usage = isinstance(chunk.get("usage"), dict)
        if has_usage:  # kept even after the end, for accounting
            self._usage = dict(chunk["usage"])
        if self._done:
            return b""
        out = self._start()
        choice = openai_chat.first_choice(chunk.get("choices"))
        if choice is not None and not self._finished:
            out.extend(self._on_choice(choice))
        if self._finished and has_usage:
            out.extend(self._end())
        return b"".join(out)

    def finish(self) -> bytes:
        """The closing events still owed (b"" when already ended); a valid stream even if empty."""
        if self._done:
            return b""
        out = self._start()
        if not self._finished:
            out.extend(self._close_all())
        out.extend(self._end())
        return b"".join(out)

    def error_event(self, err: E.GatewayError) -> bytes:
        """The `error` event, then response.failed; the stream is over (finish() emits nothing)."""
        if self._done:
            return b""
        out = self._start()
        payload = {"code": err.code or err.type, "message": err.message, "param": err.param}
        out.append(self._event("error", payload))
        output = [item.render("completed" if item.done else "incomplete") for item in self._items]
        response = _response(
            self._request, self._id, self._created_at, "failed", output, _usage(self._usage)
        )
        code = "rate_limit_exceeded" if err.status == 429 else "server_error"
        response["error"] = {"code": code, "message": err.message}
        out.append(self._event("response.failed", {"response": response}))
        self._done = True
        return b"".join(out)

    # -- events

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        doc = {"type": kind, **payload, "sequence_number": self._seq}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(doc) + b"\n\n"

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        response = _response(self._request, self._id, self._created_at, "in_progress", [], None)
        return [
            self._event("response.created", {"response": response}),
            self._event("response.in_progress", {"response": response}),
        ]

    def _on_choice(self, choice: dict[str, Any]) -> list[bytes]:
        delta = openai_chat.as_dict(choice.get("delta"))
        out: list[bytes] = []
        reasoning = openai_chat.reasoning_of(delta)
        if reasoning:
            out.extend(self._reasoning_delta(reasoning))
        for kind, key in (("output_text", "content"), ("refusal", "refusal")):
            text = delta.get(key)
            if isinstance(text, str) and text:
                out.extend(self._message_delta(kind, text))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                out.extend(self._call_delta(call))
        finish = choice.get("finish_reason")
        if finish is not None:
            self._finish = str(finish)
            out.extend(self._close_all())
        return out

    def _add(self, kind: str, item_id: str, **fields: Any) -> tuple[_Item, bytes]:
        item = _Item(kind, len(self._items), item_id, **fields)
        self._items.append(item)
        added = {"output_index": item.index, "item": item.render("in_progress")}
        return item, self._event("response.output_item.added", added)

    def _status(self) -> str:
        return "incomplete" if self._finish in _INCOMPLETE else "completed"

    def _reasoning_delta(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        item = self._open
        if item is None or item.kind != "reasoning":
            out.extend(self._close_open())
            item, added = self._add("reasoning", f"rs_{self._suffix}_{len(self._items)}")
            self._open = item
            part = {"type": "summary_text", "text": ""}
            out.append(added)
            at = {**self._ids(item), "summary_index": 0}
            out.append(self._event("response.reasoning_summary_part.added", {**at, "part": part}))
        item.text += text
        payload = {**self._ids(item), "summary_index": 0, "delta": text}
        out.append(self._event("response.reasoning_summary_text.delta", payload))
        return out

    def _ids(self, item: _Item) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.index}

    def _message_delta(self, kind: str, text: str) -> list[bytes]:
        out: list[bytes] = []
        item = self._open
        if item is None or item.kind != "message":
            out.extend(self._close_open())
            item, added = self._add("message", f"msg_{self._suffix}_{len(self._items)}")
            self._open = item
            out.append(added)
        if not item.parts or item.parts[-1][0] != kind:
            if item.parts:
                out.extend(self._part_done(item))
            item.parts.append([kind, ""])
            at = {**self._ids(item), "content_index": len(item.parts) - 1}
            out.append(self._event("response.content_part.added", {**at, "part": _part(kind, "")}))
        item.parts[-1][1] += text
        payload = {**self._ids(item), "content_index": len(item.parts) - 1, "delta": text}
        if kind == "output_text":
            out.append(self._event("response.output_text.delta", {**payload, "logprobs": []}))
        else:
            out.append(self._event("response.refusal.delta", payload))
        return out

    def _part_done(self, item: _Item) -> list[bytes]:
        kind, text = item.parts[-1]
        ids = {**self._ids(item), "content_index": len(item.parts) - 1}
        if kind == "output_text":
            done = self._event("response.output_text.done", {**ids, "text": text, "logprobs": []})
        else:
            done = self._event("response.refusal.done", {**ids, "refusal": text})
        return [done, self._event("response.content_part.done", {**ids, "part": _part(kind, text)})]

    def _call_delta(self, call: dict[str, Any]) -> list[bytes]:
        index = call["index"] if _is_int(call.get("index")) else 0
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        fn = openai_chat.as_dict(call.get("function"))
        name = fn.get("name") if isinstance(fn.get("name"), str) else ""
        out: list[bytes] = []
        item = self._calls.get(index)
        if item is None or (call_id is not None and item.call_id not in ("", call_id)):
            out.extend(self._close_open())  # text before a call ends where the call begins
            n = len(self._items)
            item, added = self._add(
                "function_call", f"fc_{self._suffix}_{n}",
                call_id=call_id or "", name=name,
            )  # fmt: skip
            self._calls[index] = item
            out.append(added)
        elif name and not item.name:
            item.name = name
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            item.arguments += args
            payload = {**self._ids(item), "delta": args}
            out.append(self._event("response.function_call_arguments.delta", payload))
        return out

    def _close_open(self) -> list[bytes]:
        item, self._open = self._open, None
        return self._close(item) if item is not None else []

    def _close(self, item: _Item) -> list[bytes]:
        if item.done:
            return []
        item.done = True
        ids = self._ids(item)
        out: list[bytes] = []
        if item.kind == "message" and item.parts:
            out.extend(self._part_done(item))
        elif item.kind == "reasoning":
            part = {"type": "summary_text", "text": item.text}
            at = {**ids, "summary_index": 0}
            out.append(
                self._event("response.reasoning_summary_text.done", {**at, "text": item.text})
            )
            out.append(self._event("response.reasoning_summary_part.done", {**at, "part": part}))
        elif item.kind == "function_call":
            done = {**ids, "name": item.name, "arguments": item.arguments}
            out.append(self._event("response.function_call_arguments.done", done))
        done_item = {"output_index": item.index, "item": item.render(self._status())}
        out.append(self._event("response.output_item.done", done_item))
        return out

    def _close_all(self) -> list[bytes]:
        self._finished = True
        self._open = None
        out: list[bytes] = []
        for item in self._items:
            out.extend(self._close(item))
        return out

    def _end(self) -> list[bytes]:
        self._done = True
        output = [item.render(self._status()) for item in self._items]
        response = _response(
            self._request, self._id, self._created_at, "completed", output, _usage(self._usage)
        )
        _finish(response, self._finish)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return [self._event(kind, {"response": response})]


__all__ = ["MIN_OUTPUT_TOKENS", "StreamTranslator", "from_chat", "to_chat", "validate"]
