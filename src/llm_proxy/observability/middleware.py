"""The one ASGI middleware around everything: request id, auth, security headers, last-resort 500."""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from llm_proxy.api.http import error_headers, send_error, send_json
from llm_proxy.auth import ANONYMOUS, authenticate
from llm_proxy.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequestError,
    PermissionDeniedError,
)
from llm_proxy.gateway import Gateway
from llm_proxy.limits.plan import Plan, Rate

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


async def _ip_admit(gw: Gateway, rate: Rate, request_id: str) -> list[tuple[bytes, bytes]]:
    """Seed 001's per-IP limit on a route without limits of its own: its headers, or a 429."""
    from llm_proxy.accounting import rate_headers, refusal

    verdict = await gw.limits.admit(Plan(request_id, rates=[rate]))
    if not verdict.ok:
        raise refusal(verdict)
    return rate_headers(verdict.states, time.time())


async def _send_error_for(path: str, send: Any, err: GatewayError) -> None:
    """A refusal before the route (401, 403, the IP limit's 429) in the route's own error shape:
    seed 001's on /api/v1, Anthropic's on /v1/messages, else OpenAI's (all carry OpenAI's keys)."""
    if path.startswith("/api/v1/"):
        from llm_proxy.endpoints.seeds import seed1_error

        await send_json(send, err.status, seed1_error(err), error_headers(err))
    elif path.startswith("/v1/messages"):
        from llm_proxy.formats.anthropic_inbound import error_body

        await send_json(send, err.status, error_body(err), error_headers(err))
    else:
        await send_error(send, err)


def _request_id(given: bytes | None) -> bytes:
    # Propagate the client's id when it is short and printable; never reflect junk.
    if given and len(given) <= 128 and _SAFE_ID.fullmatch(given):
        return given
    return os.urandom(16).hex().encode()


_SAFE_ID = re.compile(rb"[A-Za-z0-9._:\-]+")
_PREFLIGHT_METHODS = b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
_EXPOSE = (
    b"x-request-id, x-llm-proxy-provider, retry-after, x-ratelimit-limit, x-ratelimit-remaining, "
    b"x-ratelimit-reset, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, "
    b"x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, "
    b"x-ratelimit-reset-tokens"
)


class GatewayMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): one header dict, a send wrapper, a dict lookup.

    Does CORS itself (seed 004's semantics: an allowed Origin is echoed on preflight and simple
    requests) because Starlette's CORSMiddleware wraps every send even without an Origin header.
    """

    def __init__(self, app: Any, gateway: Gateway, fast_routes: dict[str, Any]) -> None:
        self.app = app
        self.gw = gateway
        # Hot paths served without the framework's router and exception layers (see
        # docs/decisions/0001-raw-asgi-hot-path.md); everything else goes through FastAPI.
        self.fast_routes = fast_routes

    def _cors(self, origin: bytes, headers: dict[bytes, bytes]) -> list[tuple[bytes, bytes]] | None:
        allowed = self.gw.router.runtime.settings.cors_allow_origins
        if not allowed or ("*" not in allowed and origin.decode("latin-1") not in allowed):
            return None
        return [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
            (b"access-control-expose-headers", _EXPOSE),
        ]

    async def _preflight(
        self, send: Any, cors: list[tuple[bytes, bytes]] | None, headers: dict[bytes, bytes]
    ) -> None:
        if cors is None:
            await send_error(
                send,
                PermissionDeniedError("Disallowed CORS origin.", code="cors_origin_not_allowed"),
            )
            return
        out = [
            *cors[:2],
            (b"access-control-allow-methods", _PREFLIGHT_METHODS),
            (b"access-control-max-age", b"600"),
            (b"content-length", b"0"),
        ]
        asked = headers.get(b"access-control-request-headers")
        if asked:
            out.append((b"access-control-allow-headers", asked))
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})

    async def _admit_caller(
        self, scope: dict[str, Any], state: dict[str, Any], headers: dict[bytes, bytes], path: str
    ) -> list[tuple[bytes, bytes]]:
        """Authenticate (401), gate admin paths (403), take the client IP's limit (429)."""
        gw = self.gw
        try:
            principal = await authenticate(headers, gw.router.runtime.master_key_sha256, gw.keys)
        except AuthenticationError:
            # Wrong keys count against the client IP too, so guessing keys is throttled (429).
            rate = gw.ip.rate(path, gw.ip.client_ip(scope, headers)) if gw.ip.enabled else None
            if rate is not None:
                await _ip_admit(gw, rate, state["request_id"])
            raise
        state["principal"] = principal
        if not principal.admin and (path.startswith("/admin") or path == "/providers"):
            raise PermissionDeniedError(
                "This endpoint needs the master key or an admin key.", code="admin_only"
            )
        rate = gw.ip.rate(path, gw.ip.client_ip(scope, headers)) if gw.ip.enabled else None
        if rate is None:
            return []
        if path in self.fast_routes:
            state["ip_rate"] = rate  # taken with the call's own limits, in one step
            return []
        return await _ip_admit(gw, rate, state["request_id"])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        rid = _request_id(headers.get(b"x-request-id"))
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = rid.decode()
        state["headers"] = headers
        path: str = scope["path"]
        extra: list[tuple[bytes, bytes]] = [
            (b"x-request-id", rid),
            *(DOCS_HEADERS if path in _DOCS else SECURITY_HEADERS),
        ]
        origin = headers.get(b"origin")
        cors = self._cors(origin, headers) if origin else None
        if cors:
            extra += cors
        started = False

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        method = scope["method"]
        try:
            if method == "OPTIONS" and origin and b"access-control-request-method" in headers:
                await self._preflight(send_wrapper, cors, headers)
                return
            if path in self.gw.router.runtime.settings.public_paths:
                state["principal"] = ANONYMOUS
            else:
                extra += await self._admit_caller(scope, state, headers, path)
            handler = self.fast_routes.get(path)
            if handler is not None:
                if method != "POST":
                    raise InvalidRequestError(
                        f"Method {method} is not allowed here; use POST.",
                        status=405,
                        code="method_not_allowed",
                        headers={"Allow": "POST"},
                    )
                await handler(self.gw, scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        except GatewayError as err:
            if not started:
                await _send_error_for(path, send_wrapper, err)
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
