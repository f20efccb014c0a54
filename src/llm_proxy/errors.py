"""GatewayError and its subclasses, named after the OpenAI error types they render as."""

from __future__ import annotations

from typing import Any

import orjson


class GatewayError(Exception):
    """An error that renders as an OpenAI-shaped JSON body with a fixed HTTP status."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        """The OpenAI error object: {"error": {"message", "type", "param", "code"}}."""
        err: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}

    def to_json(self) -> bytes:
        return orjson.dumps(self.body())


class InvalidRequestError(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status = 403
    type = "permission_error"


class NotFoundError(GatewayError):
    status = 404
    type = "not_found_error"


class ModelNotFoundError(InvalidRequestError):
    status = 404
    code = "model_not_found"


class RequestTooLargeError(InvalidRequestError):
    status = 413
    code = "request_too_large"


class RequestTimeoutError(InvalidRequestError):
    status = 408
    code = "request_timeout"


class RateLimitError(GatewayError):
    status = 429
    type = "rate_limit_error"


class UpstreamError(GatewayError):
    """The upstream answered with an error; status is mapped, its message kept where safe."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class ServiceUnavailableError(GatewayError):
    status = 503
    type = "service_unavailable_error"


class UpstreamTimeoutError(GatewayError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class ContextLengthExceededError(InvalidRequestError):
    code = "context_length_exceeded"


__all__ = [
    "AuthenticationError",
    "ContextLengthExceededError",
    "GatewayError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
    "UpstreamError",
    "UpstreamTimeoutError",
]
