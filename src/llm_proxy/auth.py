"""Gateway credentials: the master key and virtual keys (hashed at rest, compared in constant
time; a virtual key is found by its SHA-256, which reveals nothing of the secret)."""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llm_proxy.errors import AuthenticationError
from llm_proxy.runtime import hash_key

if TYPE_CHECKING:
    from llm_proxy.keys.book import KeyBook
    from llm_proxy.keys.records import Holder

KEY_FILE = "master_key.sha256"
_HEADERS = (b"authorization", b"x-api-key", b"api-key")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the master key, or a virtual key (with its team, if it has one)."""

    name: str
    via: bytes  # the header that carried the gateway key
    key: Holder | None = None
    team: Holder | None = None
    admin: bool = False


MASTER = {h: Principal("master", h, admin=True) for h in _HEADERS}
ANONYMOUS = Principal("anonymous", b"")  # on paths configured as public


def presented_keys(headers: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """(header, key) for each credential header present."""
    out = []
    for h in _HEADERS:
        v = headers.get(h)
        if v:
            if h == b"authorization":
                scheme, _, token = v.partition(b" ")
                if scheme.lower() != b"bearer" or not token.strip():
                    continue
                v = token.strip()
            out.append((h, v))
    return out


async def authenticate(
    headers: dict[bytes, bytes], master_sha256: bytes, book: KeyBook | None = None
) -> Principal:
    """The caller's principal, or a 401 `invalid_api_key`.

    Any credential header may carry the gateway key; the others (say, the user's own upstream
    key in Authorization while the gateway key travels in X-API-Key) are left for forwarding.
    """
    found = presented_keys(headers)
    if not found:
        raise AuthenticationError(
            "You didn't provide an API key. Provide it as 'Authorization: Bearer <key>', "
            "'X-API-Key' or 'api-key'."
        )
    unknown: list[tuple[bytes, bytes]] = []
    for header, key in found:
        digest = hash_key(key.decode("latin-1"))
        if hmac.compare_digest(digest, master_sha256):
            return MASTER[header]
        if book is not None:
            hexed = digest.hex()
            holder = book.get(hexed)
            if holder is None:
                unknown.append((header, digest))
                continue
            return _principal(book, holder, header, digest)
    for header, digest in unknown if book is not None else ():
        assert book is not None
        holder = await book.lookup(digest.hex())
        if holder is not None:
            return _principal(book, holder, header, digest)
    raise AuthenticationError("Incorrect API key provided.")


def _principal(book: KeyBook, key: Holder, header: bytes, digest: bytes) -> Principal:
    if not hmac.compare_digest(bytes.fromhex(key.key_hash), digest):
        raise AuthenticationError("Incorrect API key provided.")
    if not key.live(time.time()):
        if key.expires_at is not None and time.time() >= key.expires_at:
            raise AuthenticationError("This API key has expired.", code="key_expired")
        raise AuthenticationError("This API key is disabled.", code="key_disabled")
    team = book.team_of(key)
    if key.team_id and team is None:
        # Its team was deleted (or is not known here yet): never serve it without the team's
        # limits and budget.
        raise AuthenticationError("This API key's team does not exist.", code="team_not_found")
    if team is not None and team.disabled:
        raise AuthenticationError("This API key's team is disabled.", code="team_disabled")
    return Principal(key.name or key.id, header, key, team, key.role == "admin")


def new_key() -> str:
    return "sk-llmp-" + secrets.token_urlsafe(32)


def stored_master_key(data_dir: str) -> bytes | None:
    """The hash kept in the data directory, if there is a valid one."""
    try:
        digest = bytes.fromhex((Path(data_dir) / KEY_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return digest if len(digest) == 32 else None


def ensure_master_key(configured: str | None, data_dir: str) -> tuple[bytes, str | None]:
    """(sha256 of the master key, the new key if one was generated now).

    Only the hash is kept on disk (mode 0600); a generated key is shown once.
    """
    if configured:
        return hash_key(configured), None
    stored = stored_master_key(data_dir)
    if stored is not None:
        return stored, None
    path = Path(data_dir) / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_key()
    digest = hash_key(key)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(digest.hex() + "\n")
    os.chmod(path, 0o600)
    return digest, key
