"""Parse and validate a chat-completions body: what OpenAI would reject, we reject, nothing more."""

from __future__ import annotations

from typing import Any

import orjson

from llm_proxy.errors import InvalidRequestError

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NEEDS_CONTENT = frozenset({"system", "developer", "user", "tool"})
# name -> (min, max) for numeric parameters (OpenAI's documented ranges).
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
    "n": (1, 128),
    "max_tokens": (1, 2**31 - 1),
    "max_completion_tokens": (1, 2**31 - 1),
    "top_logprobs": (0, 20),
    "seed": (-(2**63), 2**63 - 1),
}
_INTS = frozenset({"n", "max_tokens", "max_completion_tokens", "top_logprobs", "seed"})
_BOOLS = ("stream", "logprobs", "parallel_tool_calls", "store")
_OBJECTS = ("response_format", "stream_options", "metadata", "logit_bias", "prediction", "audio")
# orjson parses up to 1024 levels but serializes at most 254; anything deeper could be read but
# not forwarded, so it is refused here. Only bodies with this many brackets can be that deep.
_MAX_DEPTH = 254


def _bad(message: str, param: str | None, code: str = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity, UTF-8 only, bounded depth) or a 400."""
    if not raw:
        raise _bad("The request body is empty; expected a JSON object.", None, "invalid_json")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _bad(f"The request body is not valid JSON: {e}.", None, "invalid_json") from None
    if raw.count(b"[") + raw.count(b"{") > _MAX_DEPTH:
        try:
            orjson.dumps(doc)  # C speed; fails exactly when the body is nested too deeply
        except orjson.JSONEncodeError:
            raise _bad(
                f"The request body is nested more than {_MAX_DEPTH} levels deep.",
                None,
                "invalid_json",
            ) from None
    return doc


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_number(body: dict[str, Any], name: str) -> None:
    v = body[name]
    if v is None:
        return
    if name in _INTS:
        if not isinstance(v, int) or isinstance(v, bool):
            raise _bad(
                f"'{name}' must be an integer, got {type(v).__name__}.", name, "invalid_type"
            )
    elif not _is_num(v):
        raise _bad(f"'{name}' must be a number, got {type(v).__name__}.", name, "invalid_type")
    lo, hi = _RANGES[name]
    if not lo <= v <= hi:
        raise _bad(f"'{name}' must be between {lo:g} and {hi:g}, got {v}.", name)


def _check_content(content: Any, role: str, where: str, msg: dict[str, Any]) -> None:
    if content is None:
        if role in _NEEDS_CONTENT:
            raise _bad(f"'{where}.content' is required for role '{role}'.", f"{where}.content")
        if role == "assistant" and not (
            msg.get("tool_calls")
            or msg.get("function_call")
            or msg.get("audio")
            or "refusal" in msg
        ):
            raise _bad(
                f"'{where}.content' is required unless 'tool_calls' is given.",
                f"{where}.content",
            )
        return
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad(
            f"'{where}.content' must be a string or an array of content parts.",
            f"{where}.content",
            "invalid_type",
        )
    if role in _NEEDS_CONTENT and not content:
        raise _bad(f"'{where}.content' must not be an empty array.", f"{where}.content")
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(
                f"'{where}.content[{j}]' must be an object with a string 'type'.",
                f"{where}.content[{j}]",
                "invalid_type",
            )


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise _bad(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise _bad("'messages' must be an array.", "messages", "invalid_type")
    if not messages:
        raise _bad("'messages' must contain at least one message.", "messages", "empty_array")
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"'{where}' must be an object.", where, "invalid_type")
        role = msg.get("role")
        if role is None:
            raise _bad(
                f"Missing required parameter: '{where}.role'.",
                f"{where}.role",
                "missing_required_parameter",
            )
        if not isinstance(role, str):
            raise _bad(f"'{where}.role' must be a string.", f"{where}.role", "invalid_type")
        if role not in ROLES:
            raise _bad(
                f"'{where}.role' must be one of {sorted(ROLES)}, got {role!r}.", f"{where}.role"
            )
        _check_content(msg.get("content"), role, where, msg)
        if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
            raise _bad(
                f"'{where}.tool_call_id' is required for role 'tool'.",
                f"{where}.tool_call_id",
                "missing_required_parameter",
            )
        tool_calls = msg.get("tool_calls")
        if tool_calls is not None and not isinstance(tool_calls, list):
            raise _bad(
                f"'{where}.tool_calls' must be an array.", f"{where}.tool_calls", "invalid_type"
            )


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("'tools' must be an array.", "tools", "invalid_type")
        for i, t in enumerate(tools):
            if not isinstance(t, dict):
                raise _bad(f"'tools[{i}]' must be an object.", f"tools[{i}]", "invalid_type")
            fn = t.get("function")
            if not isinstance(t.get("type"), str):
                raise _bad(f"'tools[{i}]' must be an object with a 'type'.", f"tools[{i}]")
            if t["type"] == "function" and not (isinstance(fn, dict) and fn.get("name")):
                raise _bad(
                    f"'tools[{i}].function.name' is required.",
                    f"tools[{i}].function.name",
                    "missing_required_parameter",
                )
    choice = body.get("tool_choice")
    if choice is not None and not (
        choice in ("none", "auto", "required") or isinstance(choice, dict)
    ):
        raise _bad("'tool_choice' must be 'none', 'auto', 'required' or an object.", "tool_choice")


def validate_chat(body: Any) -> dict[str, Any]:
    """The body if it is a request OpenAI would accept; else an InvalidRequestError naming the param."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", None, "invalid_type")
    model = body.get("model")
    if model is None:
        raise _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(model, str):
        raise _bad("'model' must be a string.", "model", "invalid_type")
    if not model or len(model) > 256:
        raise _bad("'model' must be a non-empty string (at most 256 characters).", "model")
    _check_messages(body.get("messages"))
    for name in _RANGES.keys() & body.keys():
        _check_number(body, name)
    for name in _BOOLS:
        v = body.get(name)
        if v is not None and not isinstance(v, bool):
            raise _bad(f"'{name}' must be a boolean.", name, "invalid_type")
    for name in _OBJECTS:
        v = body.get(name)
        if v is not None and not isinstance(v, dict):
            raise _bad(f"'{name}' must be an object.", name, "invalid_type")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise _bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str)
        or (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))
    ):
        raise _bad("'stop' must be a string or an array of up to 4 strings.", "stop")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _bad("'user' must be a string.", "user", "invalid_type")
    _check_tools(body)
    return body
