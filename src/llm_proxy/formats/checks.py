"""The primitives every request validator shares: a 400 naming its parameter, number tests."""

from __future__ import annotations

from typing import Any

from llm_proxy.errors import InvalidRequestError


def invalid(message: str, param: str | None, code: str = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
