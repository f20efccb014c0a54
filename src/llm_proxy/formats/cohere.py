"""Cohere Chat API v2 wire format: OpenAI chat requests out, Cohere chat responses and events back.

Pure functions over bytes and dicts: no network, no clock, no settings. `created` (a Unix time in
OpenAI bodies) is therefore a parameter defaulting to 0; the caller may pass the real time.

Decisions where OpenAI and Cohere differ (docs: https://docs.cohere.com/reference/chat):
- tool_choice naming one function: v2 only has REQUIRED and NONE, so the request keeps only that
  tool and sends REQUIRED (the model must call a tool, and that is the only one it has).
- parallel_tool_calls, top_logprobs and user have no v2 field and are dropped; n > 1 is a 400.
- usage: `usage.tokens` (what the model processed) is preferred over `usage.billed_units`
  (what Cohere bills, without the prompt template); billed_units is the fallback.
- tool_plan (the model's plan before tool calls) and thinking content become reasoning_content;
  an assistant turn's reasoning_content goes back as tool_plan when it has tool calls.
- finish_reason ERROR and TIMEOUT are failures, not endings: a 502 (ERROR) or 504 (TIMEOUT), and
  mid-stream an error event without [DONE], so a client never takes a broken answer as complete.
- citations are dropped; logprobs chunks (text, token_ids, logprobs) become one OpenAI entry each,
  with the chunk's text as token and the sum of its token log probabilities as logprob.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.formats import openai_chat as oc
from llm_proxy.formats.sse import payloads

PATH = "/v2/chat"  # appended to the provider base URL (https://api.cohere.com)
STREAM_PATH = "/v2/chat"  # the same endpoint; `stream: true` in the body selects SSE
_FINISH = {
    "COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls",
    "ERROR_TOXIC": "content_filter", "ERROR_LIMIT": "length", "USER_CANCEL": "stop",
}  # fmt: skip
_CONTEXT_MARKERS = ("too many tokens", "context length", "context window")
# Passed through as given when the client or the deployment params set them (Cohere-only knobs).
_PASSTHROUGH = ("safety_mode", "strict_tools", "thinking")
_ROLE_PARTS = {
    "system": ("text",), "developer": ("text",), "user": ("text", "image_url"),
    "assistant": ("text", "refusal"), "tool": ("text",),
}  # fmt: skip


def _bad(message: str, param: str | None) -> E.InvalidRequestError:
    return E.InvalidRequestError(message, param=param, code="invalid_value")


# --- requests -------------------------------------------------------------------------------


def to_upstream(
    body: dict[str, Any], upstream_model: str, params: dict[str, Any], stream: bool
) -> bytes:
    """An OpenAI chat request -> a Cohere v2 chat request; deployment params fill gaps."""
    req = {**params, **body} if params else body
    n = req.get("n")
    if n is not None and n != 1:
        raise _bad("Cohere models return one choice; 'n' must be 1.", "n")
    out: dict[str, Any] = {
        "model": upstream_model,
        "messages": _messages(req.get("messages") or []),
    }
    _tools(out, req)
    fmt = _response_format(req.get("response_format"))
    if fmt:
        out["response_format"] = fmt
    names = ("max_completion_tokens", "max_tokens")
    caps = [src[k] for src in (body, params) for k in names if src.get(k) is not None]
    if caps:
        out["max_tokens"] = caps[0]
    stop = req.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for ours, theirs in (("temperature", "temperature"), ("top_p", "p"), ("top_k", "k")):
        if req.get(ours) is not None:
            out[theirs] = req[ours]
    for name in ("seed", "presence_penalty", "frequency_penalty", *_PASSTHROUGH):
        if req.get(name) is not None:
            out[name] = req[name]
    if req.get("logprobs") is not None:
        out["logprobs"] = bool(req["logprobs"])
    if stream:
        out["stream"] = True
    return orjson.dumps(out)


def _messages(msgs: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, m in enumerate(msgs):
        where, role = f"messages[{i}]", m.get("role") if isinstance(m, dict) else None
        if role not in _ROLE_PARTS:
            raise _bad(f"Role {role!r} is not supported by Cohere models.", f"{where}.role")
        content = _content(m.get("content"), where, _ROLE_PARTS[role])
        if role == "assistant":
            out.append(_assistant(m, content, where))
        elif role == "tool":
            turn = {"role": "tool", "tool_call_id": m.get("tool_call_id")}
            out.append({**turn, "content": "" if content is None else content})
        else:  # developer instructions are system instructions to Cohere
            target = "system" if role == "developer" else role
            out.append({"role": target, "content": "" if content is None else content})
    return out


def _content(content: Any, where: str, allowed: tuple[str, ...]) -> Any:
    """OpenAI content (None, a string or parts) -> Cohere content (the same shapes)."""
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("Message content must be a string or a list of parts.", f"{where}.content")
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        here = f"{where}.content[{j}]"
        if kind not in allowed:
            raise _bad(f"Content part type {kind!r} is not supported here by Cohere models.", here)
        if kind == "image_url":
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str) or not url:
                raise _bad("An image part needs a URL or a base64 data URL.", here)
            image = {"url": url}
            if isinstance(ref, dict) and ref.get("detail"):
                image["detail"] = ref["detail"]  # low, high or auto, as in OpenAI
            parts.append({"type": "image_url", "image_url": image})
        else:  # text, or an assistant's refusal: text it said
            text = part.get("text") if kind == "text" else part.get("refusal")
            parts.append({"type": "text", "text": text or ""})
    return parts


def _assistant(m: dict[str, Any], content: Any, where: str) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": "assistant"}
    calls = []
    for call in m.get("tool_calls") or []:
        fn = call.get("function") or {}
        args = fn.get("arguments")
        if not isinstance(args, str):  # Cohere wants the arguments as a JSON string, as OpenAI
            args = orjson.dumps(args if args is not None else {}).decode()
        function = {"name": fn.get("name"), "arguments": args}
        calls.append({"id": call.get("id"), "type": "function", "function": function})
    if calls and isinstance(m.get("reasoning_content"), str) and m["reasoning_content"]:
        turn["tool_plan"] = m["reasoning_content"]
    if calls:
        turn["tool_calls"] = calls
    if content or not calls:  # "" or null beside tool calls means no text at all
        turn["content"] = "" if content is None else content
    return turn


def _tools(out: dict[str, Any], req: dict[str, Any]) -> None:
    """tools and tool_choice; a named choice keeps only that tool and makes it REQUIRED."""
    tools: list[dict[str, Any]] = []
    for i, t in enumerate(req.get("tools") or []):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or t.get("type") != "function":
            raise _bad("Only function tools are supported by Cohere models.", f"tools[{i}]")
        function: dict[str, Any] = {"name": fn.get("name")}
        if fn.get("description"):
            function["description"] = fn["description"]
        function["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
        tools.append({"type": "function", "function": function})
    if not tools:
        return
    choice = req.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if t["function"]["name"] == name]
        if not name or not tools:
            raise _bad("tool_choice must name one of the tools.", "tool_choice")
        choice = "required"
    out["tools"] = tools
    if choice in ("required", "none"):
        out["tool_choice"] = choice.upper()
    elif choice not in (None, "auto"):
        raise _bad(f"Unsupported tool_choice {choice!r}.", "tool_choice")
    if any(t["function"].get("strict") for t in req["tools"]):
        out["strict_tools"] = True  # OpenAI's per-function strict; Cohere's is per request


def _response_format(rf: Any) -> dict[str, Any] | None:
    if rf is None:
        return None
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        fmt: dict[str, Any] = {"type": "json_object"}
        if isinstance(schema, dict):
            fmt["json_schema"] = schema
        return fmt
    raise _bad(f"Unsupported response_format type {kind!r}.", "response_format")


# --- responses ------------------------------------------------------------------------------


def _head(id: str, obj: str, created: int, model: str) -> dict[str, Any]:
    return {"id": id, "object": obj, "created": created, "model": model}


def usage_of(u: dict[str, Any]) -> dict[str, Any] | None:
    """Cohere usage -> OpenAI usage: tokens processed, else tokens billed."""
    counts = u.get("tokens") if isinstance(u.get("tokens"), dict) else u.get("billed_units")
    if not isinstance(counts, dict):
        return None
    prompt = int(counts.get("input_tokens") or 0)
    completion = int(counts.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _failure(reason: Any) -> E.GatewayError | None:
    """The error a failed generation (finish_reason ERROR or TIMEOUT) becomes."""
    if reason == "ERROR":
        return E.UpstreamError("The upstream model stopped with an error (finish_reason ERROR).")
    if reason == "TIMEOUT":
        return E.UpstreamTimeoutError("The upstream model timed out (finish_reason TIMEOUT).")
    return None


def _finish(reason: Any, real_tool_calls: bool) -> str:
    finish = _FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "stop" if finish == "tool_calls" and not real_tool_calls else finish


def _logprobs(items: list[Any]) -> dict[str, Any] | None:
    content = []
    for item in items:
        if isinstance(item, dict):
            text = str(item.get("text") or "")
            logprob = float(sum(item.get("logprobs") or []))
            entry = {"token": text, "logprob": logprob, "bytes": list(text.encode())}
            content.append({**entry, "top_logprobs": []})
    return {"content": content, "refusal": None} if content else None


def from_upstream(
    raw: bytes, public_model: str, created: int = 0
) -> tuple[bytes, dict[str, Any] | None]:
    """(chat.completion for the client, OpenAI usage) from a Cohere v2 chat response."""
    doc = oc.load_object(raw)
    msg = doc.get("message")
    if not isinstance(msg, dict):
        raise oc.unexpected_body()
    failed = _failure(doc.get("finish_reason"))
    if failed is not None:
        raise failed
    texts: list[str] = []
    thoughts: list[str] = [str(msg["tool_plan"])] if msg.get("tool_plan") else []
    for part in msg.get("content") or []:
        if part.get("type") == "text":
            texts.append(part.get("text") or "")
        elif part.get("type") == "thinking":
            thoughts.append(part.get("thinking") or "")
    calls = []
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        function = {"name": fn.get("name"), "arguments": fn.get("arguments") or "{}"}
        calls.append({"id": call.get("id"), "type": "function", "function": function})
    content = "".join(texts) if texts or not calls else None
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    raw_usage = doc.get("usage") or doc.get("meta")  # `meta` in older v2 examples
    usage = usage_of(raw_usage) if isinstance(raw_usage, dict) else None
    finish = _finish(doc.get("finish_reason"), bool(calls))
    logprobs = _logprobs(doc.get("logprobs") or [])
    choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}
    out = _head(f"chatcmpl-{doc.get('id', '')}", "chat.completion", created, public_model)
    out["choices"] = [choice]
    if usage is not None:
        out["usage"] = usage
    return orjson.dumps(out), usage


# --- streams --------------------------------------------------------------------------------


@dataclass(slots=True)
class StreamState:
    """Carried from event to event of one Cohere stream."""

    public_model: str
    client_wants_usage: bool
    usage: dict[str, Any] | None = None  # OpenAI-shaped, so far
    done: bool = False  # message-end was handled (or a failure ended the stream)
    chunks: int = 0  # upstream events handled
    created: int = 0
    head: dict[str, Any] = field(default_factory=dict)  # id, object, created, model of chunks
    started: bool = False  # the chunk carrying role went out
    tools: int = 0  # tool calls seen: the next OpenAI tool_calls index
    tool_index: dict[Any, int] = field(default_factory=dict)  # Cohere event index -> ours
    with_args: set[int] = field(default_factory=set)  # our tool indexes that sent arguments
    finish: str | None = None  # the finish_reason already sent
    deltas: int = 0  # deltas relayed: an output estimate until message-end's usage
    final: bool = False  # message-end reported usage

    def __post_init__(self) -> None:
        self.head = _head("chatcmpl-", "chat.completion.chunk", self.created, self.public_model)


def new_stream_state(public_model: str, client_wants_usage: bool, created: int = 0) -> StreamState:
    return StreamState(public_model, client_wants_usage, created=created)


def _chunk(
    state: StreamState, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
) -> bytes:
    if not state.started:  # the first chunk says who speaks, whatever event came first
        state.started = True
        delta = {"role": "assistant", **delta}
    choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    return orjson.dumps({**state.head, "choices": [choice]})


def _delta(state: StreamState, delta: dict[str, Any], logprobs: Any = None) -> list[bytes]:
    """A content, reasoning or arguments chunk; counted for the usage estimate."""
    state.deltas += 1
    if not state.final:
        n = state.deltas
        state.usage = {
            "prompt_tokens": 0, "completion_tokens": n, "total_tokens": n, "estimated": True,
        }  # fmt: skip
    return [_chunk(state, delta, logprobs=logprobs)]


def _message_of(doc: dict[str, Any]) -> dict[str, Any]:
    delta = doc.get("delta")
    msg = delta.get("message") if isinstance(delta, dict) else None
    return msg if isinstance(msg, dict) else {}


def _on_message_start(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    if doc.get("id"):
        state.head["id"] = f"chatcmpl-{doc['id']}"
    return [] if state.started else [_chunk(state, {"content": ""})]


def _on_content(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    """content-start and content-delta: text (or a reasoning model's thinking)."""
    content = _message_of(doc).get("content")
    if not isinstance(content, dict):
        return []
    item = doc.get("logprobs")
    logprobs = _logprobs([item]) if isinstance(item, dict) else None
    if content.get("text"):
        return _delta(state, {"content": content["text"]}, logprobs)
    if content.get("thinking"):
        return _delta(state, {"reasoning_content": content["thinking"]})
    return []


def _on_tool_plan(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    plan = _message_of(doc).get("tool_plan")
    return _delta(state, {"reasoning_content": plan}) if plan else []


def _tool_call(doc: dict[str, Any]) -> dict[str, Any]:
    call = _message_of(doc).get("tool_calls")
    if isinstance(call, list):  # one call per event; some servers wrap it in a list
        call = call[0] if call else None
    return call if isinstance(call, dict) else {}


def _on_tool_start(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    call = _tool_call(doc)
    tool = state.tools
    state.tools += 1
    state.tool_index[doc.get("index", tool)] = tool
    fn = call.get("function") or {}
    args = fn.get("arguments") or ""
    if args:
        state.with_args.add(tool)
    function = {"name": fn.get("name"), "arguments": args}
    out = {"index": tool, "id": call.get("id"), "type": "function", "function": function}
    return [_chunk(state, {"tool_calls": [out]})]


def _current_tool(doc: dict[str, Any], state: StreamState) -> int | None:
    if not state.tools:
        return None  # arguments before any tool-call-start: nothing to attach them to
    return state.tool_index.get(doc.get("index"), state.tools - 1)


def _on_tool_delta(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    tool = _current_tool(doc, state)
    args = (_tool_call(doc).get("function") or {}).get("arguments")
    if tool is None or not args:
        return []
    state.with_args.add(tool)
    return _delta(state, {"tool_calls": [{"index": tool, "function": {"arguments": args}}]})


def _on_tool_end(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    tool = _current_tool(doc, state)
    if tool is None or tool in state.with_args:
        return []
    state.with_args.add(tool)  # no arguments at all: "{}", so that they parse as JSON
    return [_chunk(state, {"tool_calls": [{"index": tool, "function": {"arguments": "{}"}}]})]


def _on_message_end(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    delta: dict[str, Any] = doc["delta"] if isinstance(doc.get("delta"), dict) else {}
    usage = usage_of(delta["usage"]) if isinstance(delta.get("usage"), dict) else None
    if usage is not None:
        state.usage, state.final = usage, True
    reason = delta.get("finish_reason")
    failed = _failure(reason)
    if failed is not None:
        state.done = True  # the error event ends the stream: no [DONE] after it
        return [failed.to_json()]
    out = []
    if state.finish is None:
        state.finish = _finish(reason, state.tools > 0)
        out.append(_chunk(state, {}, state.finish))
    return [*out, *_end(state)]


def _end(state: StreamState) -> list[bytes]:
    """finish_reason (if none went out yet), the usage chunk if asked, [DONE]."""
    out = [] if state.finish else [_chunk(state, {}, "stop")]
    state.finish = state.finish or "stop"
    state.done = True
    if state.client_wants_usage and state.usage is not None:
        usage = {k: v for k, v in state.usage.items() if k != "estimated"}
        out.append(orjson.dumps({**state.head, "choices": [], "usage": usage}))
    return [*out, b"[DONE]"]


_HANDLERS = {
    "message-start": _on_message_start,
    "content-start": _on_content,
    "content-delta": _on_content,
    "tool-plan-delta": _on_tool_plan,
    "tool-call-start": _on_tool_start,
    "tool-call-delta": _on_tool_delta,
    "tool-call-end": _on_tool_end,
    "message-end": _on_message_end,
}  # content-end, citation-start/-end and debug carry nothing for the client


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
    return handler(doc, state) if handler else []


def from_upstream_events(segment: bytes, state: StreamState) -> bytes:
    """A segment of complete Cohere SSE events -> OpenAI SSE bytes (b"" when nothing to emit)."""
    out: list[bytes] = []
    for data in payloads(segment):
        out.extend(_handle(data, state) or ())
    return oc.frame(out) if out else b""


def finish_stream(state: StreamState, leftover: list[bytes]) -> bytes:
    """At upstream EOF: the rest of a cut-off last event, then [DONE] or an error event."""
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
    """A Cohere error ({"id"?, "message"}) -> a GatewayError."""
    return oc.error_from(
        _map_error, status, raw, headers, client_key_forwarded, exact_status, secrets
    )


def _map_error(
    status: int, raw: bytes, headers: dict[str, str], key_forwarded: bool
) -> E.GatewayError:
    message = _message(raw)
    low = message.lower()
    if status in (400, 422) and any(m in low for m in _CONTEXT_MARKERS):
        return E.ContextLengthExceededError(message, param="messages")
    if status == 404 and "model" in low:
        return E.ModelNotFoundError(message, param="model")
    if status == 498:  # Cohere's "invalid token": a refused key, like 401
        status = 401
    if status == 499:  # cancelled on Cohere's side, not by our client: an upstream failure
        return E.UpstreamError(message or "The upstream provider cancelled the request.")
    # Everything else maps as for OpenAI upstreams (auth refusals, 422 -> 400, 429 + Retry-After,
    # 500 -> 502, 503, 504); its parser reads Cohere's top-level "message".
    return oc.map_error(status, raw, headers, key_forwarded)


def _message(raw: bytes) -> str:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip()[:500]
    msg = doc.get("message")
    return str(msg)[:2000] if msg else ""
