"""The admit and record stages: model access, rate limits, parallel slots and budget
reservations before the call; settlement, cost and the spend row after it.

A key's limits and its team's are checked and taken in one atomic step (limits/plan.py), so
concurrent calls cannot beat them; budgets reserve the worst case and settle to the real cost.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llm_proxy import errors as E
from llm_proxy.auth import Principal
from llm_proxy.keys.records import Holder
from llm_proxy.limits.plan import NANO, Plan, Rate, RateState, Reserve, Settlement, Slot, Verdict
from llm_proxy.spend.cost import deployment_pricing

log = logging.getLogger("llm_proxy")

MINUTE = 60.0
_FOREVER = 10 * 365 * 86400.0


@dataclass(slots=True)
class Ticket:
    """What admission took for one call, to be settled when it ends."""

    plan: Plan
    verdict: Verdict
    est_tokens: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A deliberately high guess (3 characters a token) of the prompt's size, without a tokenizer."""
    chars = 0
    n = 0
    for m in body.get("messages") or ():
        n += 1
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            chars += len(c)
        elif isinstance(c, list):
            for part in c:
                if isinstance(part, dict):
                    t = part.get("text")
                    chars += len(t) if isinstance(t, str) else 1000  # an image or file part
    tools = body.get("tools")
    if tools:
        chars += len(repr(tools))
    inp = body.get("input")  # embeddings
    if inp is not None and n == 0:
        items = inp if isinstance(inp, list) else [inp]
        for x in items:
            chars += len(x) if isinstance(x, str) else 3 * (len(x) if isinstance(x, list) else 1)
    return chars // 3 + 4 * n + 1


def max_output(body: dict[str, Any], default: int) -> int:
    for k in ("max_completion_tokens", "max_tokens"):
        v = body.get(k)
        if isinstance(v, int) and v > 0:
            return v
    return default


def allowed(p: Principal, model: str) -> bool:
    """Whether the key and its team may use `model` (fallbacks are skipped when not)."""
    return all(h is None or h.allows(model) for h in (p.key, p.team))


def check_models(p: Principal, model: str, alias: str | None = None) -> None:
    """403 unless the key and team may use `model` (or `alias`: the public model a
    `provider/<public model>` name stands for)."""
    for h in (p.key, p.team):
        if h is not None and not h.allows(model) and not (alias and h.allows(alias)):
            raise E.PermissionDeniedError(
                f"This {'key' if h is p.key else 'team'} may not use the model '{model}'.",
                param="model",
                code="model_not_allowed",
            )


def plan_for(
    p: Principal,
    body: dict[str, Any],
    deployments: Callable[[], list[Any]],
    settings: Any,
    ip_rate: Rate | None,
    now: float,
) -> Ticket | None:
    """The limits this call must pass, or None when none apply (the master key, unlimited).

    `deployments()` lists every deployment the call may reach (fallbacks included): a budget
    reserves the dearest. Reservations and slots are held under a token of the gateway's own,
    never the client's request id, so two calls can never share one."""
    if p.key is None and ip_rate is None:
        return None
    plan = Plan(os.urandom(12).hex())
    if ip_rate is not None:
        plan.rates.append(ip_rate)
    ticket = Ticket(plan, Verdict(True))
    holders = [h for h in (p.key, p.team) if h is not None]
    need_tokens = any(h.tpm or h.max_budget is not None for h in holders)
    if need_tokens:
        ticket.est_tokens = estimate_prompt_tokens(body)
    for h in holders:
        tag = "k" if h is p.key else "t"
        if h.rpm:
            plan.rates.append(Rate(f"r:{tag}:{h.id}", h.rpm, MINUTE, 1.0, "requests"))
        if h.tpm:
            plan.rates.append(Rate(f"t:{tag}:{h.id}", h.tpm, MINUTE, ticket.est_tokens, "tokens"))
        if h.max_parallel:
            plan.slots.append(Slot(f"p:{tag}:{h.id}", h.max_parallel))
        if h.max_budget is not None:
            if not plan.reserves:
                worst = _worst_case(body, deployments(), ticket.est_tokens, settings)
            _, end = h.period_bounds(now)
            plan.reserves.append(
                Reserve(
                    f"b:{tag}:{h.id}:{h.period_key(now)}",
                    int(h.max_budget * NANO),
                    math.ceil(worst * NANO),
                    int(h.stored_spend(now) * NANO),
                    (end - now if end is not None else _FOREVER) + 86400.0,
                    "key" if h is p.key else "team",
                )
            )
    if plan.empty():
        return None
    return ticket


def _worst_case(body: dict[str, Any], deployments: list[Any], prompt: int, settings: Any) -> float:
    """The most the call can cost: the prompt estimate plus every choice's output limit, at the
    dearest deployment it may reach. A call that sets no output limit gets one (the reserved
    `spend.reserve_max_tokens`), so it cannot cost more than was reserved."""
    out = max_output(body, 0)
    if not out and "messages" in body:  # a generation: capped at what was reserved
        out = settings.spend.reserve_max_tokens
        body["max_completion_tokens"] = out
    n = body.get("n")
    units = n if isinstance(n, int) and n > 1 else 1
    out *= units
    return max(
        (deployment_pricing(d).worst_case(prompt, out, units) for d in deployments), default=0.0
    )


async def admit(limits: Any, ticket: Ticket) -> None:
    """Take every limit of the plan, or none of them and raise the 429 of the first refusal."""
    verdict = await limits.admit(ticket.plan)
    ticket.verdict = verdict
    if not verdict.ok:
        raise refusal(verdict)
    ticket.headers = rate_headers(verdict.states, time.time())


def refusal(v: Verdict) -> E.GatewayError:
    f = v.failed
    retry = str(max(1, math.ceil(v.retry_after)))
    if isinstance(f, Rate):
        headers = {"Retry-After": retry}
        state = [RateState(f, 0, v.retry_after)]
        headers.update((k.decode(), h.decode()) for k, h in rate_headers(state, time.time()))
        what = {
            "requests": f"requests per min (RPM): Limit {f.limit}",
            "tokens": f"tokens per min (TPM): Limit {f.limit}, Requested {int(f.cost)}",
            "ip": f"requests from this IP: Limit {f.limit} per {f.window:g}s",
        }[f.kind]
        scope = "team" if f.key.startswith(("r:t:", "t:t:")) else "key"
        if f.kind == "ip":
            scope = "client"
        return E.RateLimitError(
            f"Rate limit reached for this {scope} on {what}. Please try again in {retry}s.",
            code="rate_limit_exceeded"
            if f.kind != "tokens" or f.cost <= f.limit
            else "tokens_exceed_limit",
            headers=headers,
        )
    if isinstance(f, Slot):
        scope = "team" if f.key.startswith("p:t:") else "key"
        return E.RateLimitError(
            f"This {scope} already has {f.limit} requests in flight (max_parallel_requests).",
            code="too_many_parallel_requests",
            headers={"Retry-After": retry},
        )
    assert isinstance(f, Reserve)
    err = E.RateLimitError(
        f"This {f.scope}'s budget does not cover this request: its max_budget is "
        f"${f.limit / NANO:g} per period and the request could cost up to ${f.amount / NANO:.6f}.",
        code="budget_exceeded",
    )
    err.type = "insufficient_quota"
    return err


def _duration(s: float) -> bytes:
    """OpenAI's reset format: "1s", "6m0s", "1h2m3s", "250ms"."""
    if s < 1:
        return f"{max(0, round(s * 1000))}ms".encode()
    s = math.ceil(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{sec}s".encode()
    if m:
        return f"{m}m{sec}s".encode()
    return f"{sec}s".encode()


def rate_headers(states: list[RateState], now: float) -> list[tuple[bytes, bytes]]:
    """The tightest of each kind: OpenAI's x-ratelimit-* (requests, tokens), seed 001's
    X-RateLimit-* (the client IP's)."""
    tight: dict[str, RateState] = {}
    for s in states:
        t = tight.get(s.rate.kind)
        if t is None or s.remaining < t.remaining:
            tight[s.rate.kind] = s
    out = []
    for kind in ("requests", "tokens"):
        k = tight.get(kind)
        if k is not None:
            out += [
                (b"x-ratelimit-limit-" + kind.encode(), str(k.rate.limit).encode()),
                (b"x-ratelimit-remaining-" + kind.encode(), str(max(0, k.remaining)).encode()),
                (b"x-ratelimit-reset-" + kind.encode(), _duration(k.reset)),
            ]
    ip = tight.get("ip")
    if ip is not None:
        out += [
            (b"x-ratelimit-limit", str(ip.rate.limit).encode()),
            (b"x-ratelimit-remaining", str(max(0, ip.remaining)).encode()),
            (b"x-ratelimit-reset", str(math.ceil(now + ip.reset)).encode()),
        ]
    return out


def _int(v: Any) -> int:
    return v if isinstance(v, int) and v > 0 else 0


def usage_tokens(usage: dict[str, Any] | None) -> tuple[int, int, int, int]:
    """(prompt, completion, cached, reasoning) from an OpenAI usage object."""
    if not usage:
        return 0, 0, 0, 0
    pd = usage.get("prompt_tokens_details")
    cd = usage.get("completion_tokens_details")
    return (
        _int(usage.get("prompt_tokens")),
        _int(usage.get("completion_tokens")),
        _int(pd.get("cached_tokens")) if isinstance(pd, dict) else 0,
        _int(cd.get("reasoning_tokens")) if isinstance(cd, dict) else 0,
    )


def settlement(ticket: Ticket, cost: float, tokens: int) -> Settlement | None:
    """What to give back and settle; None when nothing is held (rates only: nothing to do)."""
    plan = ticket.plan
    if not plan.slots and not plan.reserves and all(r.kind != "tokens" for r in plan.rates):
        return None
    s = Settlement(ticket.plan.request_id)
    for r in ticket.plan.rates:
        if r.kind == "tokens":
            s.rates.append((r, float(tokens - ticket.est_tokens)))
    s.slots = ticket.plan.slots
    nano = math.ceil(cost * NANO) if cost > 0 else 0
    s.reserves = [(b, nano) for b in ticket.plan.reserves]
    return s


def spend_row(
    rec: Any, p: Principal, tokens: tuple[int, int, int, int], cost: float, now: float
) -> dict[str, Any]:
    """One spend_log row; tokens = (prompt, completion, cached, reasoning)."""
    key: Holder | None = p.key
    return {
        "id": os.urandom(16).hex(),
        "ts": now,
        "request_id": rec.request_id,
        "key_id": key.id if key is not None else p.name,
        "user": (key.user or "") if key is not None else "",
        "team_id": p.team.id if p.team is not None else "",
        "model": rec.model or "",
        "provider": rec.provider or "",
        "deployment": rec.deployment or "",
        "prompt_tokens": tokens[0],
        "completion_tokens": tokens[1],
        "cached_tokens": tokens[2],
        "reasoning_tokens": tokens[3],
        "cost": cost,
        "latency_ms": round((time.monotonic() - rec.started) * 1000, 2),
        "ttft_ms": rec.ttft_ms,
        "status": rec.status or 500,
        "stream": rec.stream,
        # The budget period the cost belongs to (keys without a budget have period 0): the
        # writer adds it to the key's and team's spend in the store.
        "key_period": key.period_key(now) if key is not None else None,
        "team_period": p.team.period_key(now) if p.team is not None else None,
    }


async def finish(gw: Any, rec: Any, p: Principal, ticket: Ticket | None) -> None:
    """The record stage: settle what admission took, and spool the call's spend row."""
    now = time.time()
    prompt, completion, cached, reasoning = usage_tokens(rec.usage)
    if not prompt and rec.usage and rec.usage.get("estimated"):
        # Cut short before the usage chunk: bill the prompt we sent (estimated, high).
        prompt = rec.est_prompt or (estimate_prompt_tokens(rec.body) if rec.body else 0)
    d = rec.served
    cost = 0.0
    if d is not None:
        pricing = deployment_pricing(d)
        cost = pricing.cost(prompt, completion, cached, reasoning)
        if pricing.per_request and 200 <= rec.status < 300:
            cost += pricing.per_request * rec.units
    done = settlement(ticket, cost, prompt + completion) if ticket is not None else None
    if done is not None:
        try:
            await gw.limits.settle(done, ticket.verdict.local if ticket is not None else False)
        except Exception as e:  # Redis gone: the reservation lapses by itself
            log.warning("limits settlement failed", extra={"error": type(e).__name__})
    if rec.model is None and p.key is None:
        return  # an unreadable request from the master key: nothing to bill
    if d is None and gw.spool.full():
        return  # refused before reaching upstream while the spool is full: no row to keep
    row = spend_row(rec, p, (prompt, completion, cached, reasoning), cost, now)
    try:
        gw.spool.append(row)
    except OSError as e:
        log.error("spend row not spooled", extra={"error": str(e), "request_id": rec.request_id})
