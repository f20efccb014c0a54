"""Validation of OpenAI Responses API requests (formats/openai_responses.py translates them).

What OpenAI would reject, we reject, naming the parameter (../shared/specs/openai-openapi.yaml:
CreateResponse, ResponseProperties, ModelResponseProperties).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llm_proxy import errors as E
from llm_proxy.formats.checks import invalid as _invalid
from llm_proxy.formats.checks import is_int as _is_int
from llm_proxy.formats.checks import is_number as _is_number

_MODEL_MAX = 256
MIN_OUTPUT_TOKENS = 16  # CreateResponse.max_output_tokens minimum
_ROLES = ("user", "assistant", "system", "developer")
_TOOL_CHOICES = ("none", "auto", "required")
_FORMATS = ("text", "json_schema", "json_object")
_STATEFUL = {
    "previous_response_id": "`previous_response_id` refers to a stored response",
    "conversation": "`conversation` refers to a stored conversation",
}


# --- validation -----------------------------------------------------------------------------


def _missing(param: str) -> E.InvalidRequestError:
    return _invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _wrong_type(param: str, expected: str) -> E.InvalidRequestError:
    return _invalid(f"Invalid type for '{param}': expected {expected}.", param, "invalid_type")


def _unsupported(
    message: str, param: str, code: str = "unsupported_value"
) -> E.InvalidRequestError:
    return _invalid(message, param, code)


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _require(obj: dict[str, Any], key: str, where: str, kind: type, expected: str) -> Any:
    """obj[key], which must be present and of `kind` (bools are never ints here)."""
    value = obj.get(key)
    if value is None:
        raise _missing(_at(where, key))
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _wrong_type(_at(where, key), expected)
    return value


def _optional(obj: dict[str, Any], key: str, where: str, kind: type, expected: str) -> None:
    if obj.get(key) is not None:
        _require(obj, key, where, kind, expected)


def _given(value: Any, param: str, kind: type, expected: str) -> bool:
    """Whether an optional top-level value was given (it must then be of `kind`)."""
    if value is None:
        return False
    if not isinstance(value, kind):
        raise _wrong_type(param, expected)
    return True


def validate(body: Any) -> dict[str, Any]:
    """Refuse a create-response request as OpenAI would (structure only); return the body."""
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", None, "invalid_type")
    for name, what in _STATEFUL.items():
        if body.get(name) is not None:
            message = (
                f"{what}, but this gateway is stateless and keeps no responses: send the whole "
                "conversation as `input` instead."
            )
            raise _unsupported(message, name, "unsupported_parameter")
    model = _require(body, "model", "", str, "a string")
    if not model or len(model) > _MODEL_MAX:
        raise _invalid(f"'model' must have 1 to {_MODEL_MAX} characters.", "model")
    _check_input(body.get("input"))
    _optional(body, "instructions", "", str, "a string")
    for name in ("stream", "parallel_tool_calls", "store", "background"):
        _optional(body, name, "", bool, "a boolean")
    if body.get("background") is True:
        message = "Background responses need stored state; this gateway is stateless."
        raise _unsupported(message, "background", "unsupported_parameter")
    if body.get("prompt") is not None:
        message = "Stored prompt templates live at OpenAI; send `instructions` and `input` instead."
        raise _unsupported(message, "prompt", "unsupported_parameter")
    _check_numbers(body)
    for name in ("user", "safety_identifier", "prompt_cache_key"):
        _optional(body, name, "", str, "a string")
    _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"))
    _check_text(body.get("text"))
    _check_reasoning(body.get("reasoning"))
    _check_metadata(body.get("metadata"))
    return body


def _check_numbers(body: dict[str, Any]) -> None:
    tokens = body.get("max_output_tokens")
    if tokens is not None:
        if not _is_int(tokens):
            raise _wrong_type("max_output_tokens", "an integer")
        if tokens < MIN_OUTPUT_TOKENS:
            message = f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= {MIN_OUTPUT_TOKENS}, but got {tokens} instead."
            raise _invalid(message, "max_output_tokens", "integer_below_min_value")
    for name, top in (("temperature", 2), ("top_p", 1)):
        value = body.get(name)
        if value is None:
            continue
        if not _is_number(value):
            raise _wrong_type(name, "a number")
        if not 0 <= value <= top:
            raise _invalid(f"Invalid '{name}': expected a value between 0 and {top}.", name)


def _check_input(value: Any) -> None:
    if value is None:
        raise _missing("input")
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _wrong_type("input", "a string or an array of input items")
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _wrong_type(where, "an object")
        _optional(item, "type", where, str, "a string")
        check = _ITEM_CHECKS.get(item.get("type") or "message")
        if check is not None:
            check(item, where)


def _check_message(item: dict[str, Any], where: str) -> None:
    role = _require(item, "role", where, str, "a string")
    if role not in _ROLES:
        message = f"Invalid value for '{where}.role': expected one of {', '.join(_ROLES)}."
        raise _invalid(message, f"{where}.role")
    _check_parts(item.get("content"), f"{where}.content")


def _check_parts(value: Any, where: str) -> None:
    """A string, or a list of content parts."""
    if value is None:
        raise _missing(where)
    if not isinstance(value, str | list):
        raise _wrong_type(where, "a string or an array of content parts")
    for j, part in enumerate(value if isinstance(value, list) else ()):
        _check_part(part, f"{where}[{j}]")


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict):
        raise _wrong_type(where, "an object")
    kind = _require(part, "type", where, str, "a string")
    if kind in ("input_text", "output_text"):
        _require(part, "text", where, str, "a string")
    elif kind == "refusal":
        _require(part, "refusal", where, str, "a string")
    elif kind == "input_image":
        if part.get("image_url") is None and part.get("file_id") is None:
            raise _missing(f"{where}.image_url")
        for key in ("image_url", "file_id", "detail"):
            _optional(part, key, where, str, "a string")
    elif kind == "input_file":
        for key in ("file_data", "file_id", "file_url", "filename"):
            _optional(part, key, where, str, "a string")


def _check_function_call(item: dict[str, Any], where: str) -> None:
    for key in ("call_id", "name", "arguments"):
        _require(item, key, where, str, "a string")


def _check_function_call_output(item: dict[str, Any], where: str) -> None:
    _require(item, "call_id", where, str, "a string")
    _check_parts(item.get("output"), f"{where}.output")


_ITEM_CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "message": _check_message,
    "function_call": _check_function_call,
    "function_call_output": _check_function_call_output,
}


def _check_tools(tools: Any) -> None:
    for i, tool in enumerate(tools if _given(tools, "tools", list, "an array") else ()):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _wrong_type(where, "an object")
        if _require(tool, "type", where, str, "a string") != "function":
            continue  # built-in tools have their own fields; to_chat refuses them
        if not _require(tool, "name", where, str, "a string"):
            raise _invalid(f"'{where}.name' must not be empty.", f"{where}.name")
        _optional(tool, "description", where, str, "a string")
        _optional(tool, "parameters", where, dict, "an object")
        _optional(tool, "strict", where, bool, "a boolean")


def _check_tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            message = "Invalid value for 'tool_choice': expected 'none', 'auto' or 'required'."
            raise _invalid(message, "tool_choice")
        return
    if not isinstance(choice, dict):
        raise _wrong_type("tool_choice", "a string or an object")
    kind = _require(choice, "type", "tool_choice", str, "a string")
    if kind == "function":
        _require(choice, "name", "tool_choice", str, "a string")
    elif kind == "allowed_tools":
        if _require(choice, "mode", "tool_choice", str, "a string") not in ("auto", "required"):
            raise _invalid(
                "Invalid 'tool_choice.mode': expected 'auto' or 'required'.", "tool_choice.mode"
            )
        _require(choice, "tools", "tool_choice", list, "an array")


def _check_text(text: Any) -> None:
    if not _given(text, "text", dict, "an object"):
        return
    _optional(text, "verbosity", "text", str, "a string")
    fmt = text.get("format")
    if not _given(fmt, "text.format", dict, "an object"):
        return
    kind = _require(fmt, "type", "text.format", str, "a string")
    if kind not in _FORMATS:
        message = (
            "Invalid value for 'text.format.type': expected 'text', 'json_schema' or 'json_object'."
        )
        raise _invalid(message, "text.format.type")
    if kind == "json_schema":
        _require(fmt, "name", "text.format", str, "a string")
        _require(fmt, "schema", "text.format", dict, "an object")
        _optional(fmt, "strict", "text.format", bool, "a boolean")
        _optional(fmt, "description", "text.format", str, "a string")


def _check_reasoning(reasoning: Any) -> None:
    if not _given(reasoning, "reasoning", dict, "an object"):
        return
    for key in ("effort", "summary", "generate_summary"):
        _optional(reasoning, key, "reasoning", str, "a string")


def _check_metadata(metadata: Any) -> None:
    if not _given(metadata, "metadata", dict, "an object"):
        return
    if len(metadata) > 16:
        raise _invalid("'metadata' may hold at most 16 key-value pairs.", "metadata")
    for key, value in metadata.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            message = (
                "'metadata' keys must be at most 64 characters and values strings of at most 512."
            )
            raise _invalid(message, f"metadata.{key}")
