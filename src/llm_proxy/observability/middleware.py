"""The one ASGI middleware around everything: request id, auth, security headers, last-resort 500."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from llm_proxy.api.http import send_error
from llm_proxy.auth import authenticate
from llm_proxy.errors import GatewayError, InvalidRequestError
from llm_proxy.gateway import Gateway

log = logging.getLogger("llm_proxy")

# Helmet's default set (seed 002).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';"
        b"frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';"
        b"script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
    ),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"origin-agent-cluster", b"?1"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-dns-prefetch-control", b"off"),
    (b"x-download-options", b"noopen"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"x-permitted-cross-domain-policies", b"none"),
    (b"x-xss-protection", b"0"),
)
# The docs pages load Swagger UI / ReDoc from a CDN, so they get the set without the CSP.
DOCS_HEADERS = SECURITY_HEADERS[1:]
_DOCS = ("/docs", "/redoc", "/docs/oauth2-redirect")


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    for k, v in headers:
        if k == b"x-request-id":
            # Propagate the client's id when it is short and printable; never reflect junk.
            if (
                0 < len(v) <= 128
                and v.isascii()
                and v.replace(b"-", b"")
                .replace(b"_", b"")
                .replace(b".", b"")
                .replace(b":", b"")
                .isalnum()
            ):
                return v
            break
    return os.urandom(16).hex().encode()


class GatewayMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): a send wrapper and a dict lookup per request."""

    def __init__(self, app: Any, gateway: Gateway, fast_routes: dict[str, Any]) -> None:
        self.app = app
        self.gw = gateway
        # Hot paths served without the framework's router and exception layers (see
        # docs/decisions/0002-raw-asgi-hot-path.md); everything else goes through FastAPI.
        self.fast_routes = fast_routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope["headers"])
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = rid.decode()
        path: str = scope["path"]
        extra = ((b"x-request-id", rid), *(DOCS_HEADERS if path in _DOCS else SECURITY_HEADERS))
        started = False

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        runtime = self.gw.router.runtime
        try:
            if path not in runtime.settings.public_paths and scope["method"] != "OPTIONS":
                state["principal"] = authenticate(dict(scope["headers"]), self.gw.master_sha256)
            handler = self.fast_routes.get(path)
            if handler is not None:
                if scope["method"] != "POST":
                    raise InvalidRequestError(
                        f"Method {scope['method']} is not allowed here; use POST.",
                        status=405,
                        code="method_not_allowed",
                        headers={"Allow": "POST"},
                    )
                await handler(self.gw, scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        except GatewayError as err:
            if not started:
                await send_error(send_wrapper, err)
        except Exception:
            log.exception(
                "unhandled error", extra={"request_id": state["request_id"], "path": path}
            )
            if not started:
                await send_error(
                    send_wrapper,
                    GatewayError(
                        "The gateway hit an internal error; the request id identifies it in the logs.",
                        code="internal_error",
                    ),
                )


def uptime(gw: Gateway) -> float:
    return round(time.time() - gw.started, 3)
