"""A fake Google OAuth2 token endpoint (raw ASGI) for service-account JWT-bearer grants.

Wire format from "Using OAuth 2.0 for Server to Server Applications", HTTP/REST section:
https://developers.google.com/identity/protocols/oauth2/service-account#httprest
  POST /token  Content-Type: application/x-www-form-urlencoded
      grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>
  JWT claims: iss (client_email), scope, aud, iat, exp. Google documents aud as
  "https://oauth2.googleapis.com/token", and google-auth always sends that whatever the key's
  token_uri says; the fake also accepts its own URL as the audience.
  200 {"access_token": "...", "expires_in": 3600, "token_type": "Bearer"}
  400 {"error": "invalid_grant", "error_description": "..."} on a bad assertion.

Trust a key with `trust(private_key_id, public_key_pem)`; the JWT header's `kid` picks it.
Tokens are numbered "ya29.fake-<n>" in the order issued.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


@dataclass
class FakeGoogleToken:
    expires_in: int = 3600
    delay: float = 0.0  # seconds before answering (to make concurrent refreshes overlap)
    keys: dict[str, str] = field(default_factory=dict)  # private_key_id -> public key PEM
    requests: int = 0  # every request to /token
    issued: int = 0  # tokens handed out
    claims: list[dict[str, Any]] = field(default_factory=list)  # of each accepted assertion

    def trust(self, key_id: str, public_pem: str) -> None:
        self.keys[key_id] = public_pem

    def reset(self) -> None:
        self.requests = 0
        self.issued = 0
        self.claims.clear()
        self.expires_in = 3600
        self.delay = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if scope["path"] != "/token" or scope["method"] != "POST":
            await _json(send, 404, {"error": "not_found"})
            return
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if form.get("grant_type") != GRANT_TYPE or "assertion" not in form:
            await _json(send, 400, {"error": "unsupported_grant_type"})
            return
        audience = [GOOGLE_TOKEN_URI, f"http://{headers.get('host', '')}{scope['path']}"]
        try:
            claims = jwt.decode(form["assertion"], certs=self.keys, audience=audience)
        except Exception as e:  # bad signature, unknown kid, wrong aud, expired, malformed
            await _json(
                send, 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {e}"}
            )
            return
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            await _json(send, 400, {"error": "invalid_scope"})
            return
        self.claims.append(claims)
        self.issued += 1
        await _json(
            send,
            200,
            {
                "access_token": f"ya29.fake-{self.issued}",
                "expires_in": self.expires_in,
                "token_type": "Bearer",
            },
        )


async def _json(send: Any, status: int, doc: dict[str, Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": orjson.dumps(doc)})


def make_service_account(token_uri: str) -> tuple[dict[str, Any], str]:
    """A fresh RSA key as a service-account JSON dict, and its public key PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    info = {
        "type": "service_account",
        "project_id": "fake-project",
        "private_key_id": uuid.uuid4().hex,
        "private_key": private_pem,
        "client_email": "gw@fake-project.iam.gserviceaccount.com",
        "client_id": str(uuid.uuid4().int)[:21],
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return info, public_pem
