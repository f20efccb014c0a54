"""Gemini wire format (Generative Language API v1beta): OpenAI chat requests out, Gemini
GenerateContentResponses back.

Pure functions over bytes and dicts: no network, no clock, no settings. `created` (a Unix time in
OpenAI bodies) is therefore a parameter defaulting to 0; the caller may pass the real time. The
model is part of the URL (PATH / STREAM_PATH, formatted by the gateway and appended to
https://generativelanguage.googleapis.com/v1beta), not of the body; the key travels in the
`x-goog-api-key` header, which the gateway adds.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from llm_proxy import errors as E
from llm_proxy.formats import openai_chat as oc
from llm_proxy.formats.sse import payloads

PATH = "/models/{model}:generateContent"
STREAM_PATH = "/models/{model}:streamGenerateContent?alt=sse"
# As Google's own OpenAI-compatible endpoint maps reasoning_effort; "none" turns thinking off.
EFFORT_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}
# Gemini 3 refuses a replayed functionCall without the thought signature it came with. Signatures
# go out as tool_calls[].extra_content.google.thought_signature (as on Google's OpenAI-compatible
# endpoint); when the client did not keep one, this documented stand-in skips the check.
DUMMY_SIGNATURE = "skip_thought_signature_validator"
_FILTERED = frozenset(  # finishReasons that mean a filter stopped the answer
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
     "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"}
)  # fmt: skip
_CONTEXT_MARKERS = (
    "exceeds the maximum number of tokens", "input token count", "context window",
    "context length",
)  # fmt: skip
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_MIME = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".gif": "image/gif", ".heic": "image/heic", ".heif": "image/heif", ".pdf": "application/pdf",
}  # fmt: skip
# The OpenAPI subset Gemini's Schema accepts; other JSON Schema keywords ($schema,
# additionalProperties, $ref, ...) make it refuse the request.
_SCHEMA_KEYS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "items", "properties",
        "required", "anyOf", "propertyOrdering", "default", "example", "minItems", "maxItems",
        "minLength", "maxLength", "minProperties", "maxProperties", "minimum", "maximum",
        "pattern",
    }
)  # fmt: skip
_FORMATS = frozenset({"enum", "date-time"})  # the only string formats the Developer API takes
_MAX_REF_DEPTH = 8
_USER_PARTS = ("text", "image_url", "file", "input_audio")


def _bad(message: str, param: str | None) -> E.InvalidRequestError:
    return E.InvalidRequestError(message, param=param, code="invalid_value")


# --- requests -------------------------------------------------------------------------------


def to_upstream(
    body: dict[str, Any], upstream_model: str, params: dict[str, Any], stream: bool
) -> bytes:
    """An OpenAI chat request -> a GenerateContentRequest; deployment params fill gaps.

    The model and streaming are expressed by the URL, so neither appears in the body.
    """
    req = {**params, **body} if params else body
    system, contents = _contents(req.get("messages") or [])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    _tools(out, req)
    config = _generation_config(req, body, params)
    if config:
        out["generationConfig"] = config
    for name in ("safetySettings", "cachedContent"):  # native settings, from deployment params
        if req.get(name) is not None:
            out[name] = req[name]
    return orjson.dumps(out)


def _generation_config(
    req: dict[str, Any], body: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for src, dst in (
        ("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("seed", "seed"),
        ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"),
    ):  # fmt: skip
        if req.get(src) is not None:
            cfg[dst] = req[src]
    names = ("max_completion_tokens", "max_tokens")
    caps = [src[k] for src in (body, params) for k in names if src.get(k) is not None]
    if caps:
        cfg["maxOutputTokens"] = caps[0]
    stop = req.get("stop")
    if stop:
        cfg["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    n = req.get("n")
    if n is not None and n != 1:
        cfg["candidateCount"] = n
    rf = req.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
        cfg["responseMimeType"] = "application/json"
        schema = (rf.get("json_schema") or {}).get("schema")
        if rf["type"] == "json_schema" and isinstance(schema, dict):
            cleaned = clean_schema(schema)
            # Gemini rejects an OBJECT with no properties; "any object" is just JSON mode.
            if cleaned.get("type") not in ("object", "OBJECT") or cleaned.get("properties"):
                cfg["responseSchema"] = cleaned
    thinking = _thinking(req)
    if thinking is not None:
        cfg["thinkingConfig"] = thinking
    return cfg


def _thinking(req: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(req.get("thinkingConfig"), dict):
        return dict(req["thinkingConfig"])  # explicit Gemini setting: passed as given
    effort = req.get("reasoning_effort")
    if effort is None:
        return None
    if effort not in EFFORT_BUDGETS:
        raise _bad(f"Unsupported reasoning_effort {effort!r}.", "reasoning_effort")
    budget = EFFORT_BUDGETS[effort]
    # Thought summaries come back as reasoning_content, as thinking does from other providers.
    return {"thinkingBudget": budget, "includeThoughts": True} if budget else {"thinkingBudget": 0}


def _contents(msgs: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system parts, user/model contents) with same-role neighbours merged."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the tool messages after it
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        role = m.get("role") if isinstance(m, dict) else None
        if role in ("system", "developer"):
            system.extend(_parts(m.get("content"), where, ("text",)))
            continue
        if role == "user":
            target, parts = "user", _parts(m.get("content"), where, _USER_PARTS)
        elif role == "assistant":
            target, parts = "model", _model_parts(m, where, names)
        elif role == "tool":
            target, parts = "user", [_function_response(m, where, names)]
        else:
            raise _bad(f"Role {role!r} is not supported by Gemini models.", f"{where}.role")
        if not parts:
            continue
        if turns and turns[-1]["role"] == target:
            turns[-1]["parts"].extend(parts)
        else:
            turns.append({"role": target, "parts": parts})
    return system, turns


def _parts(content: Any, where: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) -> Gemini parts; empty text is dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    out: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind, here = part.get("type") if isinstance(part, dict) else None, f"{where}.content[{j}]"
        if kind not in allowed:
            raise _bad(f"Content part type {kind!r} is not supported here by Gemini models.", here)
        if kind in ("text", "refusal"):
            if part.get(kind):
                out.append({"text": part[kind]})
        elif kind == "image_url":
            ref = part.get("image_url")
            out.append(_media(ref.get("url") if isinstance(ref, dict) else ref, here))
        elif kind == "file":
            out.append(_media((part.get("file") or {}).get("file_data"), here))
        else:
            audio = part.get("input_audio") or {}
            if not audio.get("data") or not audio.get("format"):
                raise _bad("An input_audio part needs base64 data and a format.", here)
            out.append(
                {"inlineData": {"mimeType": f"audio/{audio['format']}", "data": audio["data"]}}
            )
    return out


def _media(url: Any, where: str) -> dict[str, Any]:
    """A data: URL -> inlineData; any other URL -> fileData, its type guessed from the name."""
    if not isinstance(url, str) or not url:
        raise _bad("An image or file part needs a URL or base64 data.", where)
    if not url.startswith("data:"):
        name = urlsplit(url).path.rsplit("/", 1)[-1].lower()
        ext = name[name.rfind(".") :] if "." in name else ""
        return {"fileData": {"mimeType": _MIME.get(ext, "image/jpeg"), "fileUri": url}}
    head, sep, data = url[5:].partition(",")
    media_type, _, enc = head.partition(";")
    if not sep or enc != "base64" or not media_type:
        raise _bad("Data URLs must look like data:<media type>;base64,<data>.", where)
    return {"inlineData": {"mimeType": media_type, "data": data}}


def _model_parts(m: dict[str, Any], where: str, names: dict[str, str]) -> list[dict[str, Any]]:
    parts = _parts(m.get("content"), where, ("text", "refusal"))
    calls = m.get("tool_calls") or []
    signed = any(_signature(c) for c in calls)
    for j, call in enumerate(calls):
        fn = call.get("function") or {}
        here = f"{where}.tool_calls[{j}]"
        if not fn.get("name"):
            raise _bad("A tool call needs a function name.", f"{here}.function.name")
        names[str(call.get("id"))] = fn["name"]
        args = _arguments(fn.get("arguments"), here)
        part: dict[str, Any] = {"functionCall": {"name": fn["name"], "args": args}}
        # Like Gemini's own answers: the first call of a step carries the signature.
        signature = _signature(call) or (DUMMY_SIGNATURE if j == 0 and not signed else None)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _signature(call: Any) -> str | None:
    extra = call.get("extra_content") if isinstance(call, dict) else None
    google = extra.get("google") if isinstance(extra, dict) else None
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return sig if isinstance(sig, str) and sig else None


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw or "{}") if isinstance(raw, str | None) else raw
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad("Tool call arguments must be a JSON object.", f"{where}.function.arguments")
    return parsed


def _function_response(m: dict[str, Any], where: str, names: dict[str, str]) -> dict[str, Any]:
    """A tool message -> a functionResponse, named after the call it answers."""
    call_id = m.get("tool_call_id")
    name = names.get(str(call_id)) or m.get("name")
    if not name:
        raise _bad(f"No earlier tool call has the id {call_id!r}.", f"{where}.tool_call_id")
    content = m.get("content")
    if not isinstance(content, str):
        content = "".join(
            p.get("text") or "" for p in content or [] if isinstance(p, dict) and "text" in p
        )
    result: Any = content
    if content.lstrip().startswith(("{", "[")):
        with contextlib.suppress(orjson.JSONDecodeError):
            result = orjson.loads(content)
    return {"functionResponse": {"name": name, "response": {"content": result}}}


def _tools(out: dict[str, Any], req: dict[str, Any]) -> None:
    """tools -> functionDeclarations; tool_choice -> toolConfig.functionCallingConfig."""
    decls = []
    for i, t in enumerate(req.get("tools") or []):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or t.get("type") != "function":
            raise _bad("Only function tools are supported by Gemini models.", f"tools[{i}]")
        decl: dict[str, Any] = {"name": fn.get("name")}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, dict) and params.get("properties"):
            decl["parameters"] = clean_schema(params)  # Gemini refuses objects with no properties
        decls.append(decl)
    if not decls:
        return
    out["tools"] = [{"functionDeclarations": decls}]
    choice = req.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str) and choice in _MODES:
        out["toolConfig"] = {"functionCallingConfig": {"mode": _MODES[choice]}}
        return
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not name:
        raise _bad("tool_choice must name a function.", "tool_choice")
    config = {"mode": "ANY", "allowedFunctionNames": [name]}
    out["toolConfig"] = {"functionCallingConfig": config}


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema -> the OpenAPI subset Gemini accepts: local $refs inlined, unknown keywords
    dropped, type lists and null unions turned into `nullable`."""
    defs = schema.get("$defs") or schema.get("definitions") or {}
    out = _schema(schema, defs if isinstance(defs, dict) else {}, 0)
    return out if isinstance(out, dict) else {}


def _schema(node: Any, defs: dict[str, Any], depth: int) -> Any:
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/") else None
        if not isinstance(target, dict) or depth >= _MAX_REF_DEPTH:
            return {"type": "object"}  # remote, unknown or too deeply recursive
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _schema({**target, **rest}, defs, depth + 1)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _SCHEMA_KEYS or (key == "format" and value not in _FORMATS):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _schema(v, defs, depth) for k, v in value.items()}
        elif key == "items":
            out[key] = _schema(value, defs, depth)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [_schema(v, defs, depth) for v in value]
        else:
            out[key] = value
    if "const" in node and "enum" not in out:
        out["enum"] = [node["const"]]
    return _nullable(out)


def _nullable(out: dict[str, Any]) -> dict[str, Any]:
    kinds = out.get("type")
    if isinstance(kinds, list):  # ["string", "null"] -> "string", nullable
        rest = [k for k in kinds if k != "null"]
        del out["type"]
        if len(rest) < len(kinds):
            out["nullable"] = True
        if rest:
            out.update(
                {"type": rest[0]} if len(rest) == 1 else {"anyOf": [{"type": k} for k in rest]}
            )
    options = out.get("anyOf")
    if isinstance(options, list):
        rest = [s for s in options if s != {"type": "null"}]
        if len(rest) < len(options):
            out["nullable"] = True
            del out["anyOf"]
            if len(rest) == 1 and isinstance(rest[0], dict):
                out = {**rest[0], **out}  # Optional[X]: X, nullable; outer keys win
            elif rest:
                out["anyOf"] = rest
    return out


# --- responses ------------------------------------------------------------------------------


def _head(id: str, obj: str, created: int, model: str) -> dict[str, Any]:
    return {"id": id, "object": obj, "created": created, "model": model}


def usage_of(u: dict[str, Any]) -> dict[str, Any]:
    """Gemini usageMetadata -> OpenAI usage; thinking counts as completion, as in OpenAI's."""
    prompt = int(u.get("promptTokenCount") or 0) + int(u.get("toolUsePromptTokenCount") or 0)
    thoughts = int(u.get("thoughtsTokenCount") or 0)
    completion = int(u.get("candidatesTokenCount") or 0) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(u.get("totalTokenCount") or 0) or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(u.get("cachedContentTokenCount") or 0)},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def _finish(reason: Any, tool_calls: bool) -> str:
    if isinstance(reason, str) and reason in _FILTERED:
        return "content_filter"
    return "length" if reason == "MAX_TOKENS" else "tool_calls" if tool_calls else "stop"


def _tool_call(part: dict[str, Any], k: int, rid: str) -> dict[str, Any]:
    fc = part.get("functionCall") or {}
    fn = {"name": fc.get("name"), "arguments": orjson.dumps(fc.get("args") or {}).decode()}
    # Gemini gives calls no ids: the response id and the call's position make one.
    call_id = f"call_{rid}_{k}" if rid else f"call_{k}"
    call: dict[str, Any] = {"id": call_id, "type": "function", "function": fn}
    sig = part.get("thoughtSignature")
    if isinstance(sig, str) and sig:
        call["extra_content"] = {"google": {"thought_signature": sig}}
    return call


def _choice(cand: dict[str, Any], pos: int, rid: str) -> dict[str, Any]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (cand.get("content") or {}).get("parts") or []:
        if not isinstance(part, dict):
            continue
        if "functionCall" in part:
            calls.append(_tool_call(part, len(calls), rid))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else texts).append(part["text"])
    content = "".join(texts) if texts or not calls else None
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    finish = _finish(cand.get("finishReason"), bool(calls))
    index = cand.get("index", pos)
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


def from_upstream(
    raw: bytes, public_model: str, created: int = 0
) -> tuple[bytes, dict[str, Any] | None]:
    """(chat.completion for the client, OpenAI usage) from a GenerateContentResponse."""
    doc = oc.load_object(raw)
    cands = doc.get("candidates")
    if not (isinstance(cands, list) or "promptFeedback" in doc):
        raise oc.unexpected_body()
    rid = str(doc.get("responseId") or "")
    choices = [_choice(c, i, rid) for i, c in enumerate(cands or []) if isinstance(c, dict)]
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
        blocked = bool((doc.get("promptFeedback") or {}).get("blockReason"))
        message = {"role": "assistant", "content": "", "refusal": None}
        finish = "content_filter" if blocked else "stop"
        choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]
    um = doc.get("usageMetadata")
    usage = usage_of(um) if isinstance(um, dict) else None
    out = _head(f"chatcmpl-{rid}", "chat.completion", created, public_model)
    out["choices"] = choices
    if usage is not None:
        out["usage"] = usage
    return orjson.dumps(out), usage


# --- streams --------------------------------------------------------------------------------


@dataclass(slots=True)
class StreamState:
    """Carried from event to event of one Gemini stream (each event a whole response chunk)."""

    public_model: str
    client_wants_usage: bool
    usage: dict[str, Any] | None = None  # OpenAI-shaped, from the latest usageMetadata
    done: bool = False  # every choice begun has its finishReason: [DONE] may follow at EOF
    chunks: int = 0  # upstream events handled
    created: int = 0
    head: dict[str, Any] = field(default_factory=dict)  # id, object, created, model of chunks
    rid: str = ""  # Gemini's responseId
    begun: set[int] = field(default_factory=set)  # choices whose role chunk went out
    finished: dict[int, str] = field(default_factory=dict)  # choice -> finish_reason sent
    tools: dict[int, int] = field(default_factory=dict)  # choice -> tool calls so far
    failed: bool = False  # an error event ended the stream: nothing follows it

    def __post_init__(self) -> None:
        self.head = _head("chatcmpl-", "chat.completion.chunk", self.created, self.public_model)


def new_stream_state(public_model: str, client_wants_usage: bool, created: int = 0) -> StreamState:
    return StreamState(public_model, client_wants_usage, created=created)


def _chunk(
    state: StreamState, index: int, delta: dict[str, Any], finish: str | None = None
) -> bytes:
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    return orjson.dumps({**state.head, "choices": [choice]})


def _begin(state: StreamState, index: int) -> list[bytes]:
    if index in state.begun:
        return []
    state.begun.add(index)
    return [_chunk(state, index, {"role": "assistant", "content": ""})]


def _on_candidate(cand: Any, pos: int, state: StreamState) -> list[bytes]:
    if not isinstance(cand, dict):
        return []
    index = cand.get("index", pos)
    if not isinstance(index, int) or index in state.finished:
        return []
    out = _begin(state, index)
    for part in (cand.get("content") or {}).get("parts") or []:
        if not isinstance(part, dict):
            continue
        if "functionCall" in part:
            # Calls arrive whole: one delta with id, name and all the arguments.
            k = state.tools.get(index, 0)
            state.tools[index] = k + 1
            call = {"index": k, **_tool_call(part, k, state.rid)}
            out.append(_chunk(state, index, {"tool_calls": [call]}))
        elif isinstance(part.get("text"), str) and part["text"]:
            key = "reasoning_content" if part.get("thought") else "content"
            out.append(_chunk(state, index, {key: part["text"]}))
    reason = cand.get("finishReason")
    if reason:
        state.finished[index] = _finish(reason, state.tools.get(index, 0) > 0)
        out.append(_chunk(state, index, {}, state.finished[index]))
    return out


def _on_error(doc: dict[str, Any], state: StreamState) -> list[bytes]:
    code = doc["error"].get("code") if isinstance(doc["error"], dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500  # the HTTP status
    state.failed = True  # the error ends the stream: no [DONE] after it
    return [from_upstream_error(status, orjson.dumps(doc), {}).to_json()]


def _handle(data: bytes, state: StreamState) -> list[bytes] | None:
    """The payloads for one event; None when the data is not a JSON object (half an event)."""
    state.chunks += 1
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    if state.failed:
        return []
    if "error" in doc:
        return _on_error(doc, state)
    if isinstance(doc.get("usageMetadata"), dict):
        state.usage = usage_of(doc["usageMetadata"])
    if not state.rid and doc.get("responseId"):
        state.rid = str(doc["responseId"])
        state.head["id"] = f"chatcmpl-{state.rid}"
    if state.done:
        return []
    out: list[bytes] = []
    cands = doc.get("candidates")
    if isinstance(cands, list) and cands:
        for pos, cand in enumerate(cands):
            out.extend(_on_candidate(cand, pos, state))
    elif (doc.get("promptFeedback") or {}).get("blockReason"):
        out.extend(_begin(state, 0))
        state.finished[0] = "content_filter"
        out.append(_chunk(state, 0, {}, "content_filter"))
    state.done = bool(state.finished) and state.begun <= state.finished.keys()
    return out


def from_upstream_events(segment: bytes, state: StreamState) -> bytes:
    """A segment of complete Gemini SSE events -> OpenAI SSE bytes (b"" when nothing to emit)."""
    out: list[bytes] = []
    for data in payloads(segment):
        out.extend(_handle(data, state) or ())
    return oc.frame(out) if out else b""


def finish_stream(state: StreamState, leftover: list[bytes]) -> bytes:
    """At upstream EOF: the rest of a cut-off last event, then [DONE] or an error event.

    Gemini has no end-of-stream event: a finishReason on every choice is what makes it complete.
    """
    if state.failed:
        return b""
    out: list[bytes] = []
    for data in leftover:
        got = _handle(data, state)
        if got is None:
            break
        out.extend(got)
    if not state.failed and state.done:
        if state.client_wants_usage and state.usage is not None:
            out.append(orjson.dumps({**state.head, "choices": [], "usage": state.usage}))
        out.append(b"[DONE]")
    elif not state.failed:
        out.append(oc.truncated().to_json())
    return oc.frame(out) if out else b""


# --- errors ---------------------------------------------------------------------------------


def from_upstream_error(
    status: int,
    raw: bytes,
    headers: dict[str, str],
    client_key_forwarded: bool = False,
    exact_status: bool = False,
    secrets: tuple[bytes, ...] = (),
) -> E.GatewayError:
    """A Google error ({"error": {"code", "message", "status", "details"}}) -> a GatewayError."""
    return oc.error_from(
        _map_error, status, raw, headers, client_key_forwarded, exact_status, secrets
    )


def _map_error(
    status: int, raw: bytes, headers: dict[str, str], key_forwarded: bool
) -> E.GatewayError:
    parsed = _error_parts(raw)
    if parsed is None:  # not Google-shaped: map as for OpenAI upstreams
        return oc.map_error(status, raw, headers, key_forwarded)
    message, details = parsed
    low = message.lower()
    retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    retry = retry or _retry_delay(details)
    extra = {"Retry-After": retry} if retry else {}
    if status == 400 and _bad_key(low, details):
        status = 401  # Google answers a key it does not know with 400 API_KEY_INVALID
    elif status == 400 and any(m in low for m in _CONTEXT_MARKERS):
        return E.ContextLengthExceededError(message, param="messages")
    elif status == 404 and "model" in low:
        return E.ModelNotFoundError(message, param="model")
    elif status == 503 and "overloaded" in low:
        return E.ServiceUnavailableError(message, code="overloaded", headers=extra)
    # The rest maps as for OpenAI upstreams (auth refusals, 429 + Retry-After, 5xx -> 502).
    normal = orjson.dumps({"error": {"message": message}})
    return oc.map_error(status, normal, {"retry-after": retry} if retry else {}, key_forwarded)


def _error_parts(raw: bytes) -> tuple[str, list[Any]] | None:
    """(message, details) of a Google error body; None when the body is not one."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, list) and doc:  # streamGenerateContent without alt=sse wraps it in [...]
        doc = doc[0]
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return None
    details = err.get("details")
    return str(err.get("message") or "")[:2000], details if isinstance(details, list) else []


def _retry_delay(details: list[Any]) -> str | None:
    """google.rpc.RetryInfo's retryDelay ("7s", "47.43s") as whole Retry-After seconds."""
    for d in details:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(d.get("retryDelay") or "")
            try:
                return str(math.ceil(float(delay.removesuffix("s"))))
            except ValueError:
                return None
    return None


def _bad_key(low: str, details: list[Any]) -> bool:
    reasons = {str(d.get("reason")) for d in details if isinstance(d, dict)}
    markers = ("api key not valid", "api key expired")
    return any(m in low for m in markers) or bool(reasons & {"API_KEY_INVALID", "API_KEY_EXPIRED"})
