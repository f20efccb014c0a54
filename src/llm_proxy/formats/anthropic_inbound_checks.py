"""Validation of Anthropic Messages requests (formats/anthropic_inbound.py translates them).

What Anthropic would reject, we reject, naming the parameter (https://docs.anthropic.com/en/api/messages,
../shared/specs/anthropic-hosted_spec.json).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llm_proxy import errors as E
from llm_proxy.formats.checks import invalid as _invalid
from llm_proxy.formats.checks import is_int as _is_int
from llm_proxy.formats.checks import is_number as _is_number

MIN_THINKING_BUDGET = 1024  # Anthropic's smallest thinking budget
_MODEL_MAX = 256
_ROLES = ("user", "assistant")
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}  # "tool" names a function
_THINKING_TYPES = ("enabled", "disabled", "adaptive")


# --- validation -----------------------------------------------------------------------------


def _missing(param: str) -> E.InvalidRequestError:
    return _invalid(f"{param}: Field required.", param, "missing_required_parameter")


def _wrong_type(param: str, expected: str) -> E.InvalidRequestError:
    return _invalid(f"{param}: Input should be {expected}.", param, "invalid_type")


def _require(obj: dict[str, Any], key: str, where: str, kind: type, expected: str) -> Any:
    """obj[key], which must be present and of `kind` (bools are never ints here)."""
    value = obj.get(key)
    param = f"{where}.{key}" if where else key
    if value is None:
        raise _missing(param)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _wrong_type(param, expected)
    return value


def _optional(obj: dict[str, Any], key: str, where: str, kind: type, expected: str) -> None:
    if obj.get(key) is not None:
        _require(obj, key, where, kind, expected)


def validate(body: Any) -> dict[str, Any]:
    """Refuse a Messages create request as Anthropic would (structure only); return the body."""
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", None, "invalid_type")
    model = _require(body, "model", "", str, "a valid string")
    if not model or len(model) > _MODEL_MAX:
        raise _invalid(f"model: String should have 1 to {_MODEL_MAX} characters.", "model")
    if _require(body, "max_tokens", "", int, "a valid integer") < 1:
        raise _invalid("max_tokens: Input should be greater than or equal to 1.", "max_tokens")
    _check_messages(body.get("messages"))
    _check_system(body.get("system"))
    _check_sampling(body)
    _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"))
    _check_thinking(body.get("thinking"), body["max_tokens"])
    _optional(body, "stream", "", bool, "a valid boolean")
    _optional(body, "metadata", "", dict, "a valid dictionary")
    if isinstance(body.get("metadata"), dict):
        _optional(body["metadata"], "user_id", "metadata", str, "a valid string")
    return body


def _check_sampling(body: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if not _is_number(value):
            raise _wrong_type(name, "a valid number")
        if not 0 <= value <= 1:
            raise _invalid(f"{name}: Input should be between 0 and 1.", name)
    top_k = body.get("top_k")
    if top_k is not None and not _is_int(top_k):
        raise _wrong_type("top_k", "a valid integer")
    if top_k is not None and top_k < 0:
        raise _invalid("top_k: Input should be greater than or equal to 0.", "top_k")
    stops = body.get("stop_sequences")
    if stops is None:
        return
    if not isinstance(stops, list):
        raise _wrong_type("stop_sequences", "a valid list")
    for i, s in enumerate(stops):
        if not isinstance(s, str):
            raise _wrong_type(f"stop_sequences[{i}]", "a valid string")


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "a valid list")
    if not messages:
        raise _invalid("messages: at least one message is required.", "messages")
    last = len(messages) - 1
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _wrong_type(where, "a valid dictionary")
        role = _require(m, "role", where, str, "'user' or 'assistant'")
        if role not in _ROLES:
            raise _invalid(f"{where}.role: Input should be 'user' or 'assistant'.", f"{where}.role")
        # Only a final assistant turn (a prefill) may be empty.
        _check_content(m.get("content"), f"{where}.content", role == "assistant" and i == last)


def _check_content(content: Any, where: str, may_be_empty: bool) -> None:
    if content is None:
        raise _missing(where)
    if isinstance(content, str):
        if not content and not may_be_empty:
            raise _invalid(f"{where}: messages must have non-empty content.", where)
        return
    if not isinstance(content, list):
        raise _wrong_type(where, "a valid string or a list of content blocks")
    if not content and not may_be_empty:
        raise _invalid(f"{where}: messages must have non-empty content.", where)
    for j, block in enumerate(content):
        _check_block(block, f"{where}[{j}]")


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict):
        raise _wrong_type(where, "a valid dictionary")
    kind = _require(block, "type", where, str, "a valid string")
    check = _BLOCK_CHECKS.get(kind)
    if check is not None:
        check(block, where)


def _check_text(block: dict[str, Any], where: str) -> None:
    if not _require(block, "text", where, str, "a valid string"):
        raise _invalid(f"{where}.text: text content blocks must be non-empty.", f"{where}.text")


def _check_source(block: dict[str, Any], where: str) -> None:
    source = _require(block, "source", where, dict, "a valid dictionary")
    at = f"{where}.source"
    kind = _require(source, "type", at, str, "a valid string")
    if kind == "base64":
        _require(source, "media_type", at, str, "a valid string")
        _require(source, "data", at, str, "a valid string")
    elif kind == "url":
        _require(source, "url", at, str, "a valid string")
    elif kind == "text":
        _require(source, "data", at, str, "a valid string")


def _check_tool_use(block: dict[str, Any], where: str) -> None:
    _require(block, "id", where, str, "a valid string")
    _require(block, "name", where, str, "a valid string")
    _require(block, "input", where, dict, "a valid dictionary")


def _check_tool_result(block: dict[str, Any], where: str) -> None:
    _require(block, "tool_use_id", where, str, "a valid string")
    _optional(block, "is_error", where, bool, "a valid boolean")
    content = block.get("content")
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _wrong_type(f"{where}.content", "a valid string or a list of content blocks")
    for k, inner in enumerate(content):
        _check_block(inner, f"{where}.content[{k}]")


_BLOCK_CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "text": _check_text,
    "image": _check_source,
    "document": _check_source,
    "tool_use": _check_tool_use,
    "tool_result": _check_tool_result,
}


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _wrong_type("system", "a valid string or a list of text blocks")
    for i, block in enumerate(system):
        where = f"system[{i}]"
        if not isinstance(block, dict):
            raise _wrong_type(where, "a valid dictionary")
        if _require(block, "type", where, str, "'text'") != "text":
            raise _invalid(f"{where}.type: Input should be 'text'.", f"{where}.type")
        _require(block, "text", where, str, "a valid string")


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _wrong_type("tools", "a valid list")
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _wrong_type(where, "a valid dictionary")
        if not _require(tool, "name", where, str, "a valid string"):
            message = f"{where}.name: String should have at least 1 character."
            raise _invalid(message, f"{where}.name")
        _optional(tool, "type", where, str, "a valid string")
        if tool.get("type") in (None, "custom"):  # server tools have their own fields
            _require(tool, "input_schema", where, dict, "a valid dictionary")
            _optional(tool, "description", where, str, "a valid string")


def _check_tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise _wrong_type("tool_choice", "a valid dictionary")
    kind = _require(choice, "type", "tool_choice", str, "a valid string")
    if kind not in (*_TOOL_CHOICE, "tool"):
        message = "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'."
        raise _invalid(message, "tool_choice.type")
    if kind == "tool":
        _require(choice, "name", "tool_choice", str, "a valid string")
    _optional(choice, "disable_parallel_tool_use", "tool_choice", bool, "a valid boolean")


def _check_thinking(thinking: Any, max_tokens: int) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        raise _wrong_type("thinking", "a valid dictionary")
    kind = _require(thinking, "type", "thinking", str, "a valid string")
    if kind not in _THINKING_TYPES:
        message = "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'."
        raise _invalid(message, "thinking.type")
    if kind != "enabled":
        return
    budget = _require(thinking, "budget_tokens", "thinking", int, "a valid integer")
    if budget < MIN_THINKING_BUDGET:
        message = f"thinking.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}."
        raise _invalid(message, "thinking.budget_tokens")
    if budget >= max_tokens:
        message = "`max_tokens` must be greater than `thinking.budget_tokens`."
        raise _invalid(message, "thinking.budget_tokens")
