"""Anthropic Messages wire format: OpenAI chat requests out, Anthropic messages and events back.

Pure functions over bytes and dicts: no network, no clock, no settings. `created` (a Unix time in
OpenAI bodies) is therefore a parameter defaulting to 0; the caller may pass the real time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.formats import openai_chat as oc
from llm_proxy.formats.sse import payloads

PATH = "/messages"  # appended to the provider base URL (https://api.anthropic.com/v1)
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; used when the client sent none
# response_format becomes a forced call of this tool; its input comes back as the message content.
# A distinctive name, so that a client's own tool is never mistaken for it on the way back.
JSON_TOOL = "llm_proxy_json_output"
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
_MIN_BUDGET = 1024  # Anthropic's smallest thinking budget
_FINISH = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}  # fmt: skip
_STATUS_OF_TYPE = {  # for `error` events, which carry no HTTP status
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}  # fmt: skip
_CONTEXT_MARKERS = ("prompt is too long", "context window", "context length")


def _bad(message: str, param: str | None) -> E.InvalidRequestError:
    return E.InvalidRequestError(message, param=param, code="invalid_value")


# --- requests -------------------------------------------------------------------------------


def to_upstream(
    body: dict[str, Any], upstream_model: str, params: dict[str, Any], stream: bool
) -> bytes:
    """An OpenAI chat request -> an Anthropic Messages request; deployment params fill gaps."""
    req = {**params, **body} if params else body
    n = req.get("n")
    if n is not None and n != 1:
        raise _bad("Anthropic models return one choice; 'n' must be 1.", "n")
    system, messages = _messages(req.get("messages") or [])
    out: dict[str, Any] = {"model": upstream_model, "max_tokens": DEFAULT_MAX_TOKENS}
    if system:
        # One plain text block is sent as a string; several, or any cache_control, as blocks.
        plain = len(system) == 1 and system[0].keys() == {"type", "text"}
        out["system"] = system[0]["text"] if plain else system
    out["messages"] = messages
    _limits(out, body, params)
    stop = req.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for name in ("temperature", "top_p", "top_k"):
        if req.get(name) is not None:
            out[name] = req[name]
    if isinstance(req.get("user"), str):
        out["metadata"] = {"user_id": req["user"]}
    _tools(out, req)
    if stream:
        out["stream"] = True
    return orjson.dumps(out)


def _limits(out: dict[str, Any], body: dict[str, Any], params: dict[str, Any]) -> None:
    """max_tokens and thinking: an effort's budget is added to the default, kept under a cap."""
    names = ("max_completion_tokens", "max_tokens")
    caps = [src[k] for src in (body, params) for k in names if src.get(k) is not None]
    cap = caps[0] if caps else None
    thinking = body.get("thinking", params.get("thinking"))
    effort = body.get("reasoning_effort", params.get("reasoning_effort"))
    if isinstance(thinking, dict):
        out["thinking"] = thinking  # explicit Anthropic setting: passed as given
    elif effort is not None and effort != "none":
        if effort not in EFFORT_BUDGETS:
            raise _bad(f"Unsupported reasoning_effort {effort!r}.", "reasoning_effort")
        budget = EFFORT_BUDGETS[effort]
        if cap is None:
            cap = DEFAULT_MAX_TOKENS + budget
        budget = min(budget, cap - 1)  # OpenAI's cap counts reasoning tokens too
        if budget >= _MIN_BUDGET:
            out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if cap is not None:
        out["max_tokens"] = cap


def _messages(msgs: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, user/assistant turns) with same-role neighbours merged."""
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for i, m in enumerate(msgs):
        where, role = f"messages[{i}]", m.get("role")
        if role in ("system", "developer"):
            target, blocks = "system", _parts(m.get("content"), where, ("text",))
        elif role == "user":
            target, blocks = "user", _parts(m.get("content"), where, _USER_PARTS)
        elif role == "assistant":
            target, blocks = "assistant", _assistant_blocks(m, where)
        elif role == "tool":
            target, blocks = "user", [_tool_result(m, where)]
        else:
            raise _bad(f"Role {role!r} is not supported by Anthropic models.", f"{where}.role")
        if blocks and isinstance(m.get("cache_control"), dict):
            blocks[-1] = {**blocks[-1], "cache_control": m["cache_control"]}
        if target == "system":
            system.extend(blocks)
        elif blocks:
            if turns and turns[-1][0] == target:
                turns[-1][1].extend(blocks)
            else:
                turns.append((target, blocks))
    return system, [{"role": r, "content": _collapse(b)} for r, b in turns]


def _collapse(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"} and blocks[0]["type"] == "text":
        return str(blocks[0]["text"])
    return blocks


_USER_PARTS = ("text", "image_url", "file")


def _parts(content: Any, where: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) -> Anthropic blocks; empty text is dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind not in allowed:
            raise _bad(
                f"Content part type {kind!r} is not supported here by Anthropic models.",
                f"{where}.content[{j}]",
            )
        if kind == "text":
            if not part.get("text"):
                continue
            block: dict[str, Any] = {"type": "text", "text": part["text"]}
        elif kind == "image_url":
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            block = _media_block(url, f"{where}.content[{j}]")
        else:
            ref = part.get("file") or {}
            block = _media_block(ref.get("file_data"), f"{where}.content[{j}]")
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _media_block(url: Any, where: str) -> dict[str, Any]:
    """A data: URL -> a base64 image (or PDF document) block; any other URL -> a url source."""
    if not isinstance(url, str) or not url:
        raise _bad("An image or file part needs a URL or base64 data.", where)
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    head, sep, data = url[5:].partition(",")
    media_type, _, enc = head.partition(";")
    if not sep or enc != "base64" or not media_type:
        raise _bad("Data URLs must look like data:<media type>;base64,<data>.", where)
    kind = "document" if media_type == "application/pdf" else "image"
    return {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(m: dict[str, Any], where: str) -> list[dict[str, Any]]:
    content = m.get("content")
    if isinstance(content, list):  # refusal parts are text the assistant said
        content = [
            {"type": "text", "text": p.get("refusal")} if p.get("type") == "refusal" else p
            for p in content
        ]
    blocks = _parts(content, where, ("text",))
    for j, call in enumerate(m.get("tool_calls") or []):
        fn = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": fn.get("name"),
                "input": _arguments(fn.get("arguments"), f"{where}.tool_calls[{j}]"),
            }
        )
    return blocks


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw or "{}") if isinstance(raw, str | None) else raw
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad("Tool call arguments must be a JSON object.", f"{where}.function.arguments")
    return parsed


def _tool_result(m: dict[str, Any], where: str) -> dict[str, Any]:
    content = m.get("content")
    result = content if isinstance(content, str) else _parts(content, where, _USER_PARTS)
    return {"type": "tool_result", "tool_use_id": m.get("tool_call_id"), "content": result}


def _tools(out: dict[str, Any], req: dict[str, Any]) -> None:
    """tools, tool_choice, parallel_tool_calls and response_format (as a forced JSON tool)."""
    tools = []
    for i, t in enumerate(req.get("tools") or []):
        fn = t.get("function")
        if t.get("type") != "function" or not isinstance(fn, dict):
            raise _bad("Only function tools are supported by Anthropic models.", f"tools[{i}]")
        if fn.get("name") == JSON_TOOL and _json_schema(req) is not None:
            raise _bad(f"The tool name {JSON_TOOL!r} is reserved by the gateway.", f"tools[{i}]")
        tool: dict[str, Any] = {"name": fn.get("name")}
        if fn.get("description"):
            tool["description"] = fn["description"]
        tool["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        if "cache_control" in t:
            tool["cache_control"] = t["cache_control"]
        tools.append(tool)
    choice = _tool_choice(req.get("tool_choice")) if tools else None
    schema = _json_schema(req)
    if schema is not None:
        fmt = req["response_format"].get("json_schema") or {}
        description = fmt.get("description") or "Respond with JSON that matches input_schema."
        tools.append({"name": JSON_TOOL, "description": description, "input_schema": schema})
        if isinstance(out.get("thinking"), dict) and out["thinking"].get("type") != "disabled":
            choice = {"type": "auto"}  # Anthropic refuses forced tool use with thinking on
        elif len(tools) > 1 and (choice is None or choice["type"] in ("auto", "any")):
            choice = {"type": "any"}  # call a real tool or answer through the JSON tool
        elif choice is None or choice["type"] != "tool":
            choice = {"type": "tool", "name": JSON_TOOL}
    if not tools:
        return
    if req.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice = {**choice, "disable_parallel_tool_use": True}
    out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "required":
        return {"type": "any"}
    if choice in ("auto", "none"):
        return {"type": choice}
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not name:
        raise _bad("tool_choice must name a function.", "tool_choice")
    return {"type": "tool", "name": name}


def _json_schema(req: dict[str, Any]) -> dict[str, Any] | None:
    """The schema the answer must follow, when response_format asks for JSON."""
    rf = req.get("response_format")
    if not isinstance(rf, dict):
        return None
    if rf.get("type") == "json_object":
        return {"type": "object", "additionalProperties": True}
    if rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    return None


# --- responses ------------------------------------------------------------------------------


def _head(id: str, obj: str, created: int, model: str) -> dict[str, Any]:
    return {"id": id, "object": obj, "created": created, "model": model}


def usage_of(u: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage; cache reads and writes are part of the prompt."""
    cached = int(u.get("cache_read_input_tokens") or 0)
    prompt = (
        int(u.get("input_tokens") or 0) + cached + int(u.get("cache_creation_input_tokens") or 0)
    )
    completion = int(u.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _finish(stop_reason: Any, real_tool_calls: bool) -> str:
    finish = _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    # A forced JSON-tool answer is a plain answer to the client.
    return "stop" if finish == "tool_calls" and not real_tool_calls else finish


def from_upstream(
    raw: bytes, public_model: str, created: int = 0
) -> tuple[bytes, dict[str, Any] | None]:
    """(chat.completion for the client, OpenAI usage) from an Anthropic message."""
    doc = oc.load_object(raw)
    if not isinstance(doc.get("content"), list):
        raise oc.unexpected_body()
    texts, thoughts, calls, answer = [], [], [], None
    for block in doc["content"]:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
        elif kind == "tool_use" and block.get("name") == JSON_TOOL:
            answer = orjson.dumps(block.get("input") or {}).decode()
        elif kind == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            call = {"name": block.get("name"), "arguments": args}
            calls.append({"id": block.get("id"), "type": "function", "function": call})
    content = answer if answer is not None else "".join(texts) if texts or not calls else None
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    usage = usage_of(doc["usage"]) if isinstance(doc.get("usage"), dict) else None
    finish = _finish(doc.get("stop_reason"), bool(calls))
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    out = _head(f"chatcmpl-{doc.get('id', '')}", "chat.completion", created, public_model)
    out["choices"] = [choice]
    if usage is not None:
        out["usage"] = usage
    return orjson.dumps(out), usage


# --- streams --------------------------------------------------------------------------------


@dataclass(slots=True)
class StreamState:
    """Carried from event to event of one Anthropic stream."""

    public_model: str
    client_wants_usage: bool
    usage: dict[str, Any] | None = None  # OpenAI-shaped, so far
    done: bool = False  # message_stop (or an error event) was seen
    chunks: int = 0  # upstream events handled
    created: int = 0
    head: dict[str, Any] = field(default_factory=dict)  # id, object, created, model of chunks
    tools: int = 0  # tool_use blocks seen: the next OpenAI tool_calls index
    # Anthropic block index -> (kind, OpenAI tool index); kind is text/tool/json/thinking/other.
    blocks: dict[int, tuple[str, int]] = field(default_factory=dict)
    with_args: set[int] = field(default_factory=set)  # tool blocks that sent arguments
    finish: str | None = None  # the finish_reason already sent
    raw_usage: dict[str, Any] = field(default_factory=dict)  # Anthropic usage, merged
    deltas: int = 0  # content deltas relayed: an output estimate until the final usage
    final: bool = False  # message_delta reported output_tokens

    def __post_init__(self) -> None:
        self.head = _head("chatcmpl-", "chat.completion.chunk", self.created, self.public_model)


def new_stream_state(public_model: str, client_wants_usage: bool, created: int = 0) -> StreamState:
    return StreamState(public_model, client_wants_usage, created=created)


def _chunk(state: StreamState, delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return orjson.dumps({**state.head, "choices": [choice]})


def _set_usage(state: StreamState) -> None:
    usage = usage_of(state.raw_usage)
    if not state.final and state.deltas > usage["completion_tokens"]:
        # Until message_delta, output_tokens is a placeholder: estimate from deltas relayed.
        usage["completion_tokens"] = state.deltas
        usage["total_tokens"] = usage["prompt_tokens"] + state.deltas
        usage["estimated"] = True
    state.usage = usage


def _on_message_start(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    msg = doc.get("message") or {}
    state.head["id"] = f"chatcmpl-{msg.get('id', '')}"
    state.raw_usage.update(msg.get("usage") or {})
    _set_usage(state)
    return [_chunk(state, {"role": "assistant", "content": ""})]


def _on_block_start(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    block, index = doc.get("content_block") or {}, doc.get("index", 0)
    kind = block.get("type")
    if kind == "tool_use" and block.get("name") != JSON_TOOL:
        tool = state.tools
        state.tools += 1
        state.blocks[index] = ("tool", tool)
        args = orjson.dumps(block["input"]).decode() if block.get("input") else ""
        if args:
            state.with_args.add(index)
        fn = {"name": block.get("name"), "arguments": args}
        call = {"index": tool, "id": block.get("id"), "type": "function", "function": fn}
        return [_chunk(state, {"tool_calls": [call]})]
    if kind == "tool_use":
        state.blocks[index] = ("json", -1)
        return []
    if kind in ("text", "thinking"):
        state.blocks[index] = (kind, -1)
        key = "content" if kind == "text" else "reasoning_content"
        return [_chunk(state, {key: block[kind]})] if block.get(kind) else []
    state.blocks[index] = ("other", -1)
    return []


def _on_block_delta(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    delta, index = doc.get("delta") or {}, doc.get("index", 0)
    dtype = delta.get("type")
    out: dict[str, Any] | None = None
    if dtype == "text_delta" and delta.get("text"):
        out = {"content": delta["text"]}
    elif dtype == "thinking_delta" and delta.get("thinking"):
        out = {"reasoning_content": delta["thinking"]}
    elif dtype == "input_json_delta" and delta.get("partial_json"):
        state.with_args.add(index)
        out = _arguments_delta(state, index, delta["partial_json"])
    if out is None:
        return []  # signature_delta, citations_delta, empty fragments
    state.deltas += 1
    _set_usage(state)
    return [_chunk(state, out)]


def _arguments_delta(state: StreamState, index: int, text: str) -> dict[str, Any] | None:
    """Tool input JSON as the client sees it: tool call arguments, or content for the JSON tool."""
    kind, tool = state.blocks.get(index, ("other", -1))
    if kind == "json":
        return {"content": text}
    if kind == "tool":
        return {"tool_calls": [{"index": tool, "function": {"arguments": text}}]}
    return None


def _on_block_stop(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    index = doc.get("index", 0)
    # No input fragments at all: send "{}" so the arguments parse as JSON.
    out = None if index in state.with_args else _arguments_delta(state, index, "{}")
    return [_chunk(state, out)] if out else []


def _on_message_delta(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    usage = doc.get("usage")
    if isinstance(usage, dict):
        state.raw_usage.update({k: v for k, v in usage.items() if v is not None})
        state.final = state.final or "output_tokens" in usage
        _set_usage(state)
    stop = (doc.get("delta") or {}).get("stop_reason")
    if stop is None or state.finish is not None:
        return []
    state.finish = _finish(stop, state.tools > 0)
    return [_chunk(state, {}, state.finish)]


def _end(state: StreamState) -> list[bytes]:
    """finish_reason (if message_delta did not send one), the usage chunk if asked, [DONE]."""
    out = [] if state.finish else [_chunk(state, {}, _finish(None, False))]
    state.finish = state.finish or "stop"
    state.done = True
    if state.client_wants_usage and state.usage is not None:
        usage = {k: v for k, v in state.usage.items() if k != "estimated"}
        out.append(orjson.dumps({**state.head, "choices": [], "usage": usage}))
    return [*out, b"[DONE]"]


def _on_error(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    err = doc.get("error")
    status = _STATUS_OF_TYPE.get(str(err.get("type")), 500) if isinstance(err, dict) else 500
    state.done = True  # the error event ends the stream: no [DONE] after it
    return [from_upstream_error(status, orjson.dumps(doc), {}).to_json()]


_HANDLERS = {
    "message_start": _on_message_start,
    "content_block_start": _on_block_start,
    "content_block_delta": _on_block_delta,
    "content_block_stop": _on_block_stop,
    "message_delta": _on_message_delta,
    "message_stop": lambda doc, state: _end(state),
    "error": _on_error,
}


def _handle(data: bytes, state: StreamState) -> list[bytes] | None:
    """The payloads for one event; None when the data is not a JSON object (half an event)."""
    state.chunks += 1
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    if state.done:
        return []
    handler = _HANDLERS.get(str(doc.get("type")))
    return handler(doc, state) if handler else []  # ping and unknown events: nothing


def from_upstream_events(segment: bytes, state: StreamState) -> bytes:
    """A segment of complete Anthropic SSE events -> OpenAI SSE bytes (b"" when nothing to emit)."""
    out: list[bytes] = []
    for data in payloads(segment):
        out.extend(_handle(data, state) or ())
    return oc.frame(out) if out else b""


def finish_stream(state: StreamState, leftover: list[bytes]) -> bytes:
    """At upstream EOF: the rest of a cut-off last event, then [DONE] or an error event.

    When message_delta's finish_reason went out and only message_stop was lost, the stream ends
    normally (as openai_chat does when only [DONE] is missing).
    """
    return oc.finish_events(state, leftover, _handle, _end)


# --- errors ---------------------------------------------------------------------------------


def from_upstream_error(
    status: int,
    raw: bytes,
    headers: dict[str, str],
    client_key_forwarded: bool = False,
    exact_status: bool = False,
    secrets: tuple[bytes, ...] = (),
) -> E.GatewayError:
    """An Anthropic error ({"type":"error","error":{"type","message"}}) -> a GatewayError."""
    return oc.error_from(
        _map_error, status, raw, headers, client_key_forwarded, exact_status, secrets
    )


def _map_error(
    status: int, raw: bytes, headers: dict[str, str], key_forwarded: bool
) -> E.GatewayError:
    etype, message = _error_parts(raw)
    low = message.lower()
    retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    extra = {"Retry-After": retry} if retry else {}
    if status == 529 or etype == "overloaded_error":
        msg = message or "The upstream provider is overloaded."
        return E.ServiceUnavailableError(msg, code="overloaded", headers=extra)
    if status == 400 and any(m in low for m in _CONTEXT_MARKERS):
        return E.ContextLengthExceededError(message, param="messages")
    if status == 404 and "model" in low:
        return E.ModelNotFoundError(message, param="model")
    # Everything else maps as for OpenAI upstreams (auth refusals, 429 + Retry-After, 5xx -> 502).
    return oc.map_error(status, raw, headers, key_forwarded)


def _error_parts(raw: bytes) -> tuple[str | None, str]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, raw.decode("utf-8", "replace").strip()[:500]
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return None, ""
    return str(err.get("type") or "") or None, str(err.get("message") or "")[:2000]
