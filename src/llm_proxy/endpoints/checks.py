"""Small validators shared by the endpoints: each failure is a 400 naming its parameter."""

from __future__ import annotations

from typing import Any

from llm_proxy.canonical.chat import parse_json
from llm_proxy.formats.checks import invalid

bad = invalid  # a 400 naming its parameter


def json_object(raw: bytes) -> dict[str, Any]:
    doc = parse_json(raw)
    if not isinstance(doc, dict):
        raise bad("The request body must be a JSON object.", None, "invalid_type")
    return doc


def model(body: dict[str, Any], default: str | None = None) -> str:
    m = body.get("model", default)
    if m is None:
        raise bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(m, str):
        raise bad("'model' must be a string.", "model", "invalid_type")
    if not m or len(m) > 256:
        raise bad("'model' must be a non-empty string (at most 256 characters).", "model")
    return m


def required(body: dict[str, Any], name: str) -> Any:
    v = body.get(name)
    if v is None:
        raise bad(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    return v


def string(body: dict[str, Any], name: str, req: bool = False, max_len: int = 0) -> str | None:
    v = required(body, name) if req else body.get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise bad(f"'{name}' must be a string.", name, "invalid_type")
    if req and not v:
        raise bad(f"'{name}' must not be empty.", name)
    if max_len and len(v) > max_len:
        raise bad(f"'{name}' must be at most {max_len} characters.", name)
    return v


def integer(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        raise bad(f"'{name}' must be an integer.", name, "invalid_type")
    if not lo <= v <= hi:
        raise bad(f"'{name}' must be between {lo} and {hi}, got {v}.", name)
    return v


def number(body: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise bad(f"'{name}' must be a number.", name, "invalid_type")
    if not lo <= v <= hi:
        raise bad(f"'{name}' must be between {lo:g} and {hi:g}, got {v}.", name)
    return float(v)


def boolean(body: dict[str, Any], name: str) -> bool | None:
    v = body.get(name)
    if v is not None and not isinstance(v, bool):
        raise bad(f"'{name}' must be a boolean.", name, "invalid_type")
    return v


def one_of(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    v = body.get(name)
    if v is None:
        return None
    if v not in allowed:
        raise bad(f"'{name}' must be one of {', '.join(allowed)}; got {v!r}.", name)
    return str(v)


def obj(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    v = body.get(name)
    if v is not None and not isinstance(v, dict):
        raise bad(f"'{name}' must be an object.", name, "invalid_type")
    return v
