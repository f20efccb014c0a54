"""Key and team records as the hot path holds them, and the inputs the admin API accepts."""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

_PERIOD = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def period_seconds(period: str | None) -> float | None:
    """ "30d" -> 2592000.0; None -> None (a budget for all time)."""
    if period is None:
        return None
    m = _PERIOD.match(period.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"budget period {period!r} is not like 30d, 7d, 1d, 12h, 1w")
    return float(int(m.group(1)) * _UNIT[m.group(2)])


_MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z: the last second a datetime can hold


def parse_time(value: str | float | int | None) -> float | None:
    """An ISO date or datetime (UTC unless it says otherwise), or Unix seconds -> Unix seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        if not 0 <= value <= _MAX_TIME:
            raise ValueError("a Unix time must be between 0 and 253402300799 (year 9999)")
        return float(value)
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO date (2027-01-01) or datetime") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if dt.year < 1970:
        raise ValueError(f"{value!r} is before 1970")
    return dt.timestamp()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Holder:
    """A key or a team as the hot path sees it (built from its store row)."""

    id: str
    kind: Literal["key", "team"]
    name: str
    models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    max_parallel: int | None
    max_budget: float | None
    budget_period: str | None
    period: float | None  # seconds
    anchor: float
    spend: float  # in period `spend_period` as the store last saw it
    spend_period: int
    total_spend: float
    metadata: dict[str, Any]
    disabled: bool
    updated_at: float
    revoked_at: float | None = None
    # keys only
    key_hash: str = ""
    prefix: str = ""
    user: str | None = None
    team_id: str | None = None
    role: str = "user"
    expires_at: float | None = None
    created_at: float = 0.0
    _allowed: dict[str, bool] = field(default_factory=dict, repr=False)

    def period_key(self, now: float) -> int:
        """The budget period `now` is in, as its start (Unix seconds). Periods count from the
        anchor, which a changed budget_period moves to the moment of the change: keys only ever
        grow, so counters and stored spend of an earlier period are never mistaken for now's."""
        if self.period is None:
            return int(self.anchor)
        return int(self.anchor + ((now - self.anchor) // self.period) * self.period)

    def period_bounds(self, now: float) -> tuple[float | None, float | None]:
        """(start, end) of the budget period `now` is in; (None, None) without a period."""
        if self.period is None:
            return None, None
        start = self.anchor + ((now - self.anchor) // self.period) * self.period
        return start, start + self.period

    def stored_spend(self, now: float) -> float:
        """What the store says was spent in the current period."""
        return self.spend if self.spend_period == self.period_key(now) else 0.0

    def allows(self, model: str) -> bool:
        """Whether `model` matches the allowed globs (none listed: every model)."""
        if not self.models:
            return True
        hit = self._allowed.get(model)
        if hit is None:
            hit = any(fnmatch.fnmatchcase(model, g) for g in self.models)
            if len(self._allowed) < 1024:
                self._allowed[model] = hit
        return hit

    def live(self, now: float) -> bool:
        return not (
            self.disabled
            or self.revoked_at is not None
            or (self.expires_at is not None and now >= self.expires_at)
        )


def holder_from_row(row: Any, kind: Literal["key", "team"]) -> Holder:
    m = row._mapping
    period = m["budget_period"]
    h = Holder(
        id=m["id"],
        kind=kind,
        name=m["name"],
        models=tuple(m["models"] or ()),
        rpm=m["rpm"],
        tpm=m["tpm"],
        max_parallel=m["max_parallel"],
        max_budget=m["max_budget"],
        budget_period=period,
        period=period_seconds(period),
        anchor=m["budget_anchor"],
        spend=m["spend"],
        spend_period=m["spend_period"],
        total_spend=m["total_spend"],
        metadata=dict(m["metadata"] or {}),
        disabled=bool(m["disabled"]),
        updated_at=m["updated_at"],
        revoked_at=m["revoked_at"],
        created_at=m["created_at"],
    )
    if kind == "key":
        h.key_hash, h.prefix, h.user = m["key_hash"], m["key_prefix"], m["user"]
        h.team_id, h.role, h.expires_at = m["team_id"], m["role"], m["expires_at"]
    return h


def public_view(h: Holder, now: float | None = None) -> dict[str, Any]:
    """What the admin API shows of a key or team (never the secret nor its hash)."""
    now = time.time() if now is None else now
    start, end = h.period_bounds(now)
    doc: dict[str, Any] = {
        "id": h.id,
        "object": h.kind,
        "name": h.name,
        "models": list(h.models),
        "rpm": h.rpm,
        "tpm": h.tpm,
        "max_parallel_requests": h.max_parallel,
        "max_budget": h.max_budget,
        "budget_period": h.budget_period,
        "budget_period_start": iso(start),
        "budget_resets_at": iso(end),
        "spend": round(h.stored_spend(now), 9),
        "total_spend": round(h.total_spend, 9),
        "metadata": h.metadata,
        "disabled": h.disabled,
        "created_at": iso(h.created_at),
        "revoked_at": iso(h.revoked_at),
    }
    if h.kind == "key":
        doc.update(
            prefix=h.prefix,
            user=h.user,
            team_id=h.team_id,
            role=h.role,
            expires_at=iso(h.expires_at),
        )
    return doc


class LimitsIn(BaseModel):
    """Fields keys and teams share, as the admin API and the CLI accept them."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] | None = None
    rpm: int | None = Field(default=None, ge=1, le=2**31 - 1)
    tpm: int | None = Field(default=None, ge=1, le=2**31 - 1)
    max_parallel_requests: int | None = Field(default=None, ge=1, le=2**31 - 1)
    max_budget: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    budget_period: str | None = Field(default=None, max_length=16)
    metadata: dict[str, Any] | None = None
    disabled: bool | None = None

    @field_validator("metadata")
    @classmethod
    def _small(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        try:
            size = len(orjson.dumps(v))
        except TypeError as e:  # e.g. an integer past 64 bits: it could be stored, never shown
            raise ValueError(f"metadata must be plain JSON ({e})") from None
        if size > 16_384:
            raise ValueError("metadata is limited to 16 KiB")
        return v

    @field_validator("budget_period")
    @classmethod
    def _period(cls, v: str | None) -> str | None:
        if v is not None:
            period_seconds(v)
            return v.strip().lower()
        return v

    @field_validator("models")
    @classmethod
    def _globs(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            v = [g.strip() for g in v if g.strip()]
        return v


class KeyIn(LimitsIn):
    name: str | None = Field(default=None, max_length=200)
    user: str | None = Field(default=None, max_length=200)
    team_id: str | None = Field(default=None, max_length=40)
    role: Literal["user", "admin"] | None = None
    expires_at: str | float | None = None

    @field_validator("expires_at")
    @classmethod
    def _expiry(cls, v: str | float | None) -> str | float | None:
        parse_time(v)
        return v


class TeamIn(LimitsIn):
    name: str | None = Field(default=None, max_length=200)
