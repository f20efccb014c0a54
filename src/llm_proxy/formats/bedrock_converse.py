"""AWS Bedrock Converse / ConverseStream wire format: OpenAI chat requests out, Converse
responses (and event-stream messages) back.

Pure functions over bytes and dicts: no network, no clock, no settings, no AWS SDK. The model is
part of the URL (PATH / STREAM_PATH, formatted by the gateway and appended to
https://bedrock-runtime.<region>.amazonaws.com); SigV4 signing is the gateway's business. Streams
arrive as AWS event-stream binary messages, so DECODER replaces the SSE decoder.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.formats import openai_chat as oc
from llm_proxy.formats.anthropic_messages import JSON_TOOL
from llm_proxy.formats.eventstream import EventStreamDecoder, messages

PATH = "/model/{model}/converse"
STREAM_PATH = "/model/{model}/converse-stream"
DECODER = EventStreamDecoder
STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
_FINISH = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
}  # fmt: skip
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg",
                  "image/gif": "gif", "image/webp": "webp"}  # fmt: skip
_DOC_FORMATS = {
    "application/pdf": "pdf", "text/csv": "csv", "text/html": "html", "text/plain": "txt",
    "text/markdown": "md", "application/msword": "doc", "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}  # fmt: skip
# Native Converse fields a deployment (or client) may set; passed through unchanged.
_NATIVE = ("additionalModelRequestFields", "additionalModelResponseFieldPaths",
           "guardrailConfig", "performanceConfig", "requestMetadata")  # fmt: skip
_CONTEXT_MARKERS = (
    "too long", "context length", "context window", "input tokens exceed", "input token count",
    "too large for model", "too many input tokens",
)  # fmt: skip
# Exceptions in a stream carry no HTTP status: these are the documented ones.
_STATUS_OF_EXCEPTION = {
    "throttlingexception": 429, "validationexception": 400, "modelstreamerrorexception": 424,
    "internalserverexception": 500, "serviceunavailableexception": 503,
    "modeltimeoutexception": 408, "modelnotreadyexception": 429, "accessdeniedexception": 403,
    "resourcenotfoundexception": 404, "servicequotaexceededexception": 400,
}  # fmt: skip
_AUTH_TYPES = frozenset(
    {"accessdeniedexception", "unrecognizedclientexception", "invalidsignatureexception",
     "expiredtokenexception", "incompletesignature", "missingauthenticationtokenexception"}
)  # fmt: skip


def _bad(message: str, param: str | None) -> E.InvalidRequestError:
    return E.InvalidRequestError(message, param=param, code="invalid_value")


# --- requests -------------------------------------------------------------------------------


def to_upstream(
    body: dict[str, Any], upstream_model: str, params: dict[str, Any], stream: bool
) -> bytes:
    """An OpenAI chat request -> a Converse request; deployment params fill gaps.

    The model and streaming are expressed by the URL, so neither appears in the body.
    """
    req = {**params, **body} if params else body
    n = req.get("n")
    if n is not None and n != 1:
        raise _bad("Bedrock Converse returns one choice: n must be 1.", "n")
    system, msgs = _messages(req.get("messages") or [])
    out: dict[str, Any] = {"messages": msgs}
    if system:
        out["system"] = system
    config = _inference_config(req, body, params)
    if config:
        out["inferenceConfig"] = config
    _tools(out, req)
    for name in _NATIVE:
        if req.get(name) is not None:
            out[name] = req[name]
    return orjson.dumps(out)


def _inference_config(
    req: dict[str, Any], body: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    names = ("max_completion_tokens", "max_tokens")
    caps = [src[k] for src in (body, params) for k in names if src.get(k) is not None]
    if caps:
        cfg["maxTokens"] = caps[0]
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        if req.get(src) is not None:
            cfg[dst] = req[src]
    stop = req.get("stop")
    if stop:
        cfg["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return cfg


def _messages(msgs: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, user/assistant messages) with same-role neighbours merged."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        role = m.get("role") if isinstance(m, dict) else None
        if role in ("system", "developer"):
            system.extend(_blocks(m.get("content"), where, ("text",)))
            continue
        if role == "user":
            target, blocks = "user", _blocks(m.get("content"), where, ("text", "image_url", "file"))
        elif role == "assistant":
            target, blocks = "assistant", _assistant_blocks(m, where)
        elif role == "tool":
            target, blocks = "user", [_tool_result(m, where)]
        else:
            raise _bad(f"Role {role!r} is not supported by Bedrock models.", f"{where}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == target:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": target, "content": blocks})
    return system, turns


def _blocks(content: Any, where: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) -> Converse content blocks; empty text is dropped
    (Converse refuses blank text blocks)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    out: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind, here = part.get("type") if isinstance(part, dict) else None, f"{where}.content[{j}]"
        if kind not in allowed:
            raise _bad(f"Content part type {kind!r} is not supported here by Bedrock.", here)
        if kind in ("text", "refusal"):
            if part.get(kind):
                out.append({"text": part[kind]})
        elif kind == "image_url":
            ref = part.get("image_url")
            out.append(_image(ref.get("url") if isinstance(ref, dict) else ref, here))
        else:
            out.append(_document(part.get("file") or {}, len(out), here))
    return out


def _data_url(url: Any, where: str, what: str) -> tuple[str, str]:
    """(media type, base64 data) of a data: URL; Converse takes bytes, never a link."""
    if not isinstance(url, str) or not url.startswith("data:"):
        raise _bad(
            f"Bedrock Converse needs the {what} itself: send it as a base64 data: URL.", where
        )
    head, sep, data = url[5:].partition(",")
    media_type, _, enc = head.partition(";")
    if not sep or enc != "base64" or not media_type or not data:
        raise _bad("Data URLs must look like data:<media type>;base64,<data>.", where)
    return media_type.lower(), data


def _image(url: Any, where: str) -> dict[str, Any]:
    media_type, data = _data_url(url, where, "image")
    fmt = _IMAGE_FORMATS.get(media_type)
    if fmt is None:
        raise _bad(f"Bedrock takes png, jpeg, gif or webp images, not {media_type}.", where)
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _document(file: dict[str, Any], k: int, where: str) -> dict[str, Any]:
    media_type, data = _data_url(file.get("file_data"), where, "file")
    fmt = _DOC_FORMATS.get(media_type)
    if fmt is None:
        raise _bad(f"Bedrock does not take {media_type} documents.", where)
    # Names must be unique in a request and may hold only letters, digits, spaces, ()[]-.
    return {"document": {"format": fmt, "name": f"document {k + 1}", "source": {"bytes": data}}}


def _assistant_blocks(m: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = _blocks(m.get("content"), where, ("text", "refusal"))
    for j, call in enumerate(m.get("tool_calls") or []):
        fn = call.get("function") or {}
        here = f"{where}.tool_calls[{j}]"
        if not fn.get("name"):
            raise _bad("A tool call needs a function name.", f"{here}.function.name")
        tool_use = {"toolUseId": call.get("id"), "name": fn["name"]}
        blocks.append({"toolUse": {**tool_use, "input": _arguments(fn.get("arguments"), here)}})
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
    """A tool message -> a toolResult block: a JSON object as {"json"}, anything else as text."""
    if not m.get("tool_call_id"):
        raise _bad("A tool message needs the tool_call_id it answers.", f"{where}.tool_call_id")
    content = m.get("content")
    if not isinstance(content, str):
        content = "".join(
            p.get("text") or "" for p in content or [] if isinstance(p, dict) and "text" in p
        )
    block: dict[str, Any] = {"text": content}
    if content.lstrip().startswith("{"):
        with contextlib.suppress(orjson.JSONDecodeError):
            parsed = orjson.loads(content)
            if isinstance(parsed, dict):
                block = {"json": parsed}
    return {"toolResult": {"toolUseId": m["tool_call_id"], "content": [block]}}


def _tools(out: dict[str, Any], req: dict[str, Any]) -> None:
    """tools and tool_choice -> toolConfig; response_format JSON -> a forced JSON tool."""
    schema = _json_schema(req)
    choice = req.get("tool_choice")
    tools = []
    if choice != "none":
        for i, t in enumerate(req.get("tools") or []):
            fn = t.get("function") if isinstance(t, dict) else None
            if t.get("type") != "function" or not isinstance(fn, dict):
                raise _bad("Only function tools are supported by Bedrock models.", f"tools[{i}]")
            if fn.get("name") == JSON_TOOL and schema is not None:
                raise _bad(
                    f"The tool name {JSON_TOOL!r} is reserved by the gateway.", f"tools[{i}]"
                )
            spec: dict[str, Any] = {"name": fn.get("name")}
            if fn.get("description"):
                spec["description"] = fn["description"]
            params = fn.get("parameters") or {"type": "object", "properties": {}}
            spec["inputSchema"] = {"json": params}
            tools.append({"toolSpec": spec})
    converse_choice = _tool_choice(choice) if tools else None
    if schema is not None:
        fmt = req["response_format"].get("json_schema") or {}
        description = fmt.get("description") or "Respond with JSON that matches inputSchema."
        spec = {"name": JSON_TOOL, "description": description, "inputSchema": {"json": schema}}
        tools.append({"toolSpec": spec})
        if len(tools) > 1 and (converse_choice is None or "tool" not in converse_choice):
            converse_choice = {"any": {}}  # call a real tool or answer through the JSON tool
        elif converse_choice is None or "tool" not in converse_choice:
            converse_choice = {"tool": {"name": JSON_TOOL}}
    if not tools:
        return
    out["toolConfig"] = {"tools": tools}
    if converse_choice is not None:
        out["toolConfig"]["toolChoice"] = converse_choice


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not name:
        raise _bad("tool_choice must name a function.", "tool_choice")
    return {"tool": {"name": name}}


def _json_schema(req: dict[str, Any]) -> dict[str, Any] | None:
    """The schema the answer must follow, when response_format asks for JSON."""
    rf = req.get("response_format")
    if not isinstance(rf, dict):
        return None
    if rf.get("type") == "json_object":
        return {"type": "object"}
    if rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    return None


# --- responses ------------------------------------------------------------------------------


def _head(id: str, obj: str, created: int, model: str) -> dict[str, Any]:
    return {"id": id, "object": obj, "created": created, "model": model}


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"  # Converse responses carry no id of their own


def usage_of(u: dict[str, Any]) -> dict[str, Any]:
    """Converse TokenUsage -> OpenAI usage; cache reads and writes are part of the prompt."""
    cached = int(u.get("cacheReadInputTokens") or 0)
    prompt = int(u.get("inputTokens") or 0) + cached + int(u.get("cacheWriteInputTokens") or 0)
    completion = int(u.get("outputTokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(u.get("totalTokens") or 0) or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _finish(stop_reason: Any, real_tool_calls: bool) -> str:
    finish = _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    # A forced JSON-tool answer is a plain answer to the client.
    return "stop" if finish == "tool_calls" and not real_tool_calls else finish


def from_upstream(
    raw: bytes, public_model: str, created: int = 0
) -> tuple[bytes, dict[str, Any] | None]:
    """(chat.completion for the client, OpenAI usage) from a Converse response."""
    doc = oc.load_object(raw)
    output = doc.get("output")
    msg = output.get("message") if isinstance(output, dict) else None
    if not isinstance(msg, dict) or not isinstance(msg.get("content"), list):
        raise oc.unexpected_body()
    texts, thoughts, calls, answer = [], [], [], None
    for block in msg["content"]:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("reasoningContent"), dict):
            thoughts.append(
                (block["reasoningContent"].get("reasoningText") or {}).get("text") or ""
            )
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            args = orjson.dumps(use.get("input") or {}).decode()
            if use.get("name") == JSON_TOOL:
                answer = args
                continue
            call = {"name": use.get("name"), "arguments": args}
            calls.append({"id": use.get("toolUseId"), "type": "function", "function": call})
    content = answer if answer is not None else "".join(texts) if texts or not calls else None
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    usage = usage_of(doc["usage"]) if isinstance(doc.get("usage"), dict) else None
    finish = _finish(doc.get("stopReason"), bool(calls))
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    out = _head(_new_id(), "chat.completion", created, public_model)
    out["choices"] = [choice]
    if usage is not None:
        out["usage"] = usage
    return orjson.dumps(out), usage


# --- streams --------------------------------------------------------------------------------


@dataclass(slots=True)
class StreamState:
    """Carried from message to message of one ConverseStream."""

    public_model: str
    client_wants_usage: bool
    usage: dict[str, Any] | None = None  # OpenAI-shaped, from the metadata event
    done: bool = False  # metadata (or an exception) ended the stream: nothing follows
    chunks: int = 0  # upstream messages handled
    created: int = 0
    head: dict[str, Any] = field(default_factory=dict)  # id, object, created, model of chunks
    begun: bool = False  # the role chunk went out
    tools: int = 0  # toolUse blocks seen: the next OpenAI tool_calls index
    # Converse contentBlockIndex -> (kind, OpenAI tool index); kind is tool or json.
    blocks: dict[int, tuple[str, int]] = field(default_factory=dict)
    with_args: set[int] = field(default_factory=set)  # tool blocks that sent input fragments
    finish: str | None = None  # the finish_reason already sent (messageStop seen)

    def __post_init__(self) -> None:
        self.head = _head(_new_id(), "chat.completion.chunk", self.created, self.public_model)


def new_stream_state(public_model: str, client_wants_usage: bool, created: int = 0) -> StreamState:
    return StreamState(public_model, client_wants_usage, created=created)


def _chunk(state: StreamState, delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return orjson.dumps({**state.head, "choices": [choice]})


def _begin(state: StreamState) -> list[bytes]:
    if state.begun:
        return []
    state.begun = True
    return [_chunk(state, {"role": "assistant", "content": ""})]


def _index(doc: dict[str, Any]) -> int:
    index = doc.get("contentBlockIndex", 0)
    return index if isinstance(index, int) else 0


def _on_block_start(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    use = (doc.get("start") or {}).get("toolUse")
    if not isinstance(use, dict):
        return []
    index = _index(doc)
    if use.get("name") == JSON_TOOL:
        state.blocks[index] = ("json", -1)
        return []
    tool = state.tools
    state.tools += 1
    state.blocks[index] = ("tool", tool)
    fn = {"name": use.get("name"), "arguments": ""}
    call = {"index": tool, "id": use.get("toolUseId"), "type": "function", "function": fn}
    return [_chunk(state, {"tool_calls": [call]})]


def _on_block_delta(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    delta, index = doc.get("delta") or {}, _index(doc)
    out: dict[str, Any] | None = None
    if isinstance(delta.get("text"), str) and delta["text"]:
        out = {"content": delta["text"]}
    elif isinstance(delta.get("reasoningContent"), dict):
        text = delta["reasoningContent"].get("text")
        out = {"reasoning_content": text} if isinstance(text, str) and text else None
    elif isinstance(delta.get("toolUse"), dict):
        fragment = delta["toolUse"].get("input")
        if isinstance(fragment, str) and fragment:
            state.with_args.add(index)
            out = _arguments_delta(state, index, fragment)
    return [_chunk(state, out)] if out else []


def _arguments_delta(state: StreamState, index: int, text: str) -> dict[str, Any] | None:
    """Tool input JSON as the client sees it: tool call arguments, or content for the JSON tool."""
    kind, tool = state.blocks.get(index, ("other", -1))
    if kind == "json":
        return {"content": text}
    if kind == "tool":
        return {"tool_calls": [{"index": tool, "function": {"arguments": text}}]}
    return None


def _on_block_stop(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    index = _index(doc)
    # No input fragments at all: send "{}" so the arguments parse as JSON.
    out = None if index in state.with_args else _arguments_delta(state, index, "{}")
    return [_chunk(state, out)] if out else []


def _on_message_stop(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    if state.finish is not None:
        return []
    state.finish = _finish(doc.get("stopReason"), state.tools > 0)
    return [_chunk(state, {}, state.finish)]


def _end(state: StreamState) -> list[bytes]:
    """The usage chunk if asked, then [DONE]."""
    state.done = True
    out = []
    if state.client_wants_usage and state.usage is not None:
        out.append(orjson.dumps({**state.head, "choices": [], "usage": state.usage}))
    return [*out, b"[DONE]"]


def _on_metadata(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    if isinstance(doc.get("usage"), dict):
        state.usage = usage_of(doc["usage"])
    out = [] if state.finish else _on_message_stop({}, state)
    return [*out, *_end(state)]


_HANDLERS = {
    "messageStart": lambda doc, state: [],
    "contentBlockStart": _on_block_start,
    "contentBlockDelta": _on_block_delta,
    "contentBlockStop": _on_block_stop,
    "messageStop": _on_message_stop,
    "metadata": _on_metadata,
}


def _on_exception(headers: dict[str, str], payload: bytes, state: StreamState) -> list[bytes]:
    """An exception (or error) message -> an OpenAI error event that ends the stream."""
    state.done = True
    kind = headers.get(":exception-type") or headers.get(":error-code") or "InternalServerException"
    status = _STATUS_OF_EXCEPTION.get(kind.lower(), 500)
    if headers.get(":message-type") == "error" and ":error-message" in headers:
        payload = orjson.dumps({"message": headers[":error-message"]})
    return [from_upstream_error(status, payload, {"x-amzn-errortype": kind}).to_json()]


def _handle(headers: dict[str, str], payload: bytes, state: StreamState) -> list[bytes]:
    state.chunks += 1
    if state.done:
        return []
    if headers.get(":message-type", "event") != "event":
        return _on_exception(headers, payload, state)
    handler = _HANDLERS.get(headers.get(":event-type", ""))
    if handler is None:
        return []  # unknown events: nothing
    try:
        doc = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        return []
    if not isinstance(doc, dict):
        return []
    return [*_begin(state), *handler(doc, state)]


def from_upstream_events(segment: bytes, state: StreamState) -> bytes:
    """A segment of whole event-stream messages -> OpenAI SSE bytes (b"" when nothing to emit)."""
    if state.done:
        return b""
    try:
        parsed = messages(segment)
    except ValueError:
        state.done = True
        err = E.UpstreamError(
            "The upstream stream was corrupt (event-stream framing or checksum).",
            code="upstream_stream_corrupt",
        )
        return oc.frame([err.to_json()])
    out: list[bytes] = []
    for headers, payload in parsed:
        out.extend(_handle(headers, payload, state))
    return oc.frame(out) if out else b""


def finish_stream(state: StreamState, leftover: list[bytes]) -> bytes:
    """At upstream EOF: [DONE] when only the metadata event was lost, else a truncation error.

    `leftover` is what EventStreamDecoder.flush() gave: always empty (half a binary message
    cannot be used).
    """
    if state.done:
        return b""
    out = _end(state) if state.finish else [oc.truncated().to_json()]
    state.done = True
    return oc.frame(out)


# --- errors ---------------------------------------------------------------------------------


def from_upstream_error(
    status: int,
    raw: bytes,
    headers: dict[str, str],
    client_key_forwarded: bool = False,
    exact_status: bool = False,
    secrets: tuple[bytes, ...] = (),
) -> E.GatewayError:
    """A Bedrock error ({"message": ...} with x-amzn-ErrorType) -> a GatewayError."""
    return oc.error_from(
        _map_error, status, raw, headers, client_key_forwarded, exact_status, secrets
    )


def _map_error(
    status: int, raw: bytes, headers: dict[str, str], key_forwarded: bool
) -> E.GatewayError:
    kind, message = _error_parts(raw, headers)
    low = message.lower()
    retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    extra = {"Retry-After": retry} if retry else {}
    message = message or f"The upstream provider answered HTTP {status}."
    if kind == "throttlingexception":
        return E.RateLimitError(message, code="rate_limit_exceeded", headers=extra)
    if kind == "servicequotaexceededexception":
        return E.RateLimitError(message, code="insufficient_quota", headers=extra)
    if kind == "modelnotreadyexception":
        return E.ServiceUnavailableError(message, code="model_not_ready", headers=extra)
    if kind == "serviceunavailableexception":
        return E.ServiceUnavailableError(message, code="service_unavailable", headers=extra)
    if kind in ("modelerrorexception", "modelstreamerrorexception"):
        return E.UpstreamError(message, code="model_error")
    if kind == "resourcenotfoundexception":
        return E.ModelNotFoundError(message, param="model")
    if kind == "validationexception" and any(m in low for m in _CONTEXT_MARKERS):
        return E.ContextLengthExceededError(message, param="messages")
    if kind in _AUTH_TYPES and status not in (401, 403):
        status = 403  # a refused signature or key is an auth failure whatever the status
    if kind == "validationexception":
        status = 400
    # The rest maps as for OpenAI upstreams (auth refusals, 5xx -> 502, timeouts -> 504).
    normal = orjson.dumps({"error": {"message": message}})
    return oc.map_error(status, normal, {"retry-after": retry} if retry else {}, key_forwarded)


def _error_parts(raw: bytes, headers: dict[str, str]) -> tuple[str, str]:
    """(lower-case exception name, message) from x-amzn-ErrorType or the body's __type."""
    kind = next((v for k, v in headers.items() if k.lower() == "x-amzn-errortype"), "")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    message = ""
    if isinstance(doc, dict):
        message = str(doc.get("message") or doc.get("Message") or "")[:2000]
        kind = kind or str(doc.get("__type") or doc.get("code") or "")
    elif raw.strip():
        message = raw.decode("utf-8", "replace").strip()[:500]
    # "ThrottlingException:http://internal.amazon.com/coral/..." or "com.amazon...#Name".
    kind = kind.split(":", 1)[0].rsplit("#", 1)[-1].strip().lower()
    return kind, message
