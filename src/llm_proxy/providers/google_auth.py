"""Google service-account credentials for Vertex AI: OAuth2 access tokens, cached and refreshed.

The token comes from the JWT-bearer grant (RFC 7523) that google-auth performs against the
`token_uri` named in the service-account JSON:
https://developers.google.com/identity/protocols/oauth2/service-account#httprest

google-auth's refresh is blocking, so it runs in a worker thread. Its `requests` transport needs
the `requests` package, which this project does not depend on (and bans on the request path), so
the refresh uses a small stdlib `urllib` transport instead; like the upstream transport, it
ignores proxy environment variables.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google.auth.transport
from google.oauth2 import service_account
from typing_extensions import override

from llm_proxy.config.load import ConfigError
from llm_proxy.errors import UpstreamError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
REFRESH_MARGIN = 300.0  # seconds before expiry at which a cached token is replaced
_NO_EXPIRY_TTL = 300.0  # how long to reuse a token the endpoint gave no lifetime for
_REQUIRED = ("client_email", "private_key", "token_uri")


def load_service_account(path: str) -> dict[str, Any]:
    """Read a service-account key file (as GOOGLE_APPLICATION_CREDENTIALS names it)."""
    where = f"Google credentials file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError([f"{where}: file not found"]) from e
    except OSError as e:
        raise ConfigError([f"{where}: cannot read: {e.strerror or e}"]) from e
    except UnicodeDecodeError as e:
        raise ConfigError([f"{where}: not UTF-8 text"]) from e
    try:
        info = json.loads(text)
    except ValueError as e:
        raise ConfigError([f"{where}: not valid JSON (line {getattr(e, 'lineno', '?')})"]) from e
    if not isinstance(info, dict):
        raise ConfigError([f"{where}: expected a JSON object"])
    kind = info.get("type")
    if kind != "service_account":
        raise ConfigError(
            [
                f"{where}: type is {kind!r}, expected 'service_account' "
                "(create a service-account key in the Google Cloud console)"
            ]
        )
    missing = [k for k in _REQUIRED if not isinstance(info.get(k), str) or not info.get(k)]
    if missing:
        raise ConfigError([f"{where}: missing field(s) {', '.join(missing)}"])
    return info


class _Response(google.auth.transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = headers
        self._data = data

    @property
    @override
    def status(self) -> int:
        return self._status

    @property
    @override
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    @override
    def data(self) -> bytes:
        return self._data


class _UrllibRequest(google.auth.transport.Request):
    """google-auth's transport interface over urllib (blocking; call from a worker thread)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @override
    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Response:
        req = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
        try:
            with self._opener.open(req, timeout=timeout or self._timeout) as resp:
                return _Response(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as e:  # a status google-auth interprets itself
            with e:
                return _Response(e.code, dict(e.headers.items()), e.read())
        except (OSError, ValueError) as e:  # URLError, timeouts, resets, bad URL
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            ) from e


class ServiceAccountTokenSource:
    """Hands out "Bearer <token>" for a service account, refreshing 5 minutes before expiry."""

    def __init__(self, info: Mapping[str, Any], *, timeout: float = 10.0) -> None:
        self.client_email = str(info.get("client_email", ""))
        try:
            from_info = service_account.Credentials.from_service_account_info
            self._credentials = from_info(  # type: ignore[no-untyped-call]
                dict(info), scopes=list(SCOPES)
            )
        except (ValueError, KeyError, TypeError) as e:
            # google-auth's messages name missing fields or the key format, never the key itself.
            raise ConfigError([f"Google service account: {e}"]) from e
        self._transport = _UrllibRequest(timeout)
        self._lock = asyncio.Lock()
        self._header: str | None = None
        self._fresh_until = 0.0  # time.monotonic() after which the header is refreshed

    def _valid(self) -> bool:
        return self._header is not None and time.monotonic() < self._fresh_until

    async def authorization(self) -> str:
        """The Authorization header value; concurrent callers share one refresh."""
        if self._valid():
            assert self._header is not None
            return self._header
        async with self._lock:
            if not self._valid():
                await self._refresh()
            assert self._header is not None
            return self._header

    def _refresh_blocking(self) -> tuple[str, float | None]:
        creds = self._credentials
        creds.refresh(self._transport)
        token = creds.token
        if not isinstance(token, str) or not token:
            raise google.auth.exceptions.RefreshError(  # type: ignore[no-untyped-call]
                "the token endpoint returned no token"
            )
        expiry: datetime.datetime | None = creds.expiry
        if expiry is None:
            return token, None
        # google-auth keeps expiry as a naive UTC datetime.
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        return token, (expiry - now).total_seconds()

    async def _refresh(self) -> None:
        try:
            token, lifetime = await asyncio.to_thread(self._refresh_blocking)
        except google.auth.exceptions.GoogleAuthError as e:
            raise UpstreamError(
                f"Could not obtain a Google access token for {self.client_email}: {_reason(e)}",
                code="upstream_auth_failed",
            ) from e
        ttl = _NO_EXPIRY_TTL if lifetime is None else lifetime - REFRESH_MARGIN
        self._header = f"Bearer {token}"
        self._fresh_until = time.monotonic() + ttl


def _reason(e: Exception) -> str:
    """A short description of a google-auth failure (its first argument: error and detail)."""
    first = e.args[0] if e.args else ""
    text = first if isinstance(first, str) else type(e).__name__
    text = " ".join(text.split())
    if "PRIVATE KEY" in text:  # belt and braces: never echo key material
        return type(e).__name__
    return text[:200] or type(e).__name__
