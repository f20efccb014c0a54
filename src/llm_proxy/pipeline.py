"""The chat request pipeline: authenticate -> validate -> admit -> route -> call -> relay -> record.

Authentication runs in the gateway middleware (observability.middleware); the rest is here, one
small function per stage. The call stage tries a model's deployments in its strategy's order
(retries, hedging, failover to fallbacks), then context-window fallbacks and condensation.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_proxy import accounting
from llm_proxy import errors as E
from llm_proxy.api.http import (
    ClientDisconnected,
    DisconnectWatch,
    error_headers,
    read_body,
    send_error,
    send_json,
)
from llm_proxy.attempt import Ready, Refused, attempt, relay
from llm_proxy.auth import Principal
from llm_proxy.canonical.chat import parse_json, validate_chat
from llm_proxy.gateway import Gateway
from llm_proxy.observability.logging import record_call
from llm_proxy.routing import condense
from llm_proxy.routing.balance import Candidate, order
from llm_proxy.routing.hedge import hedge_delay, race
from llm_proxy.routing.retry import backoff, retryable, same_deployment_again
from llm_proxy.routing.router import Route, Router

log = logging.getLogger("llm_proxy")


@dataclass(slots=True)
class CallRecord:
    """What the record stage keeps about one call (logs now; spend and traces later)."""

    request_id: str
    started: float  # time.monotonic()
    model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    deployment: str | None = None
    stream: bool = False
    status: int = 0
    usage: dict[str, Any] | None = None
    chunks: int = 0
    attempts: int = 0
    hedged: bool = False
    condensed: str | None = None  # "summary" | "truncated": the request was condensed
    disconnected: bool = False
    error: str | None = None
    responded: bool = False  # the response head went out: errors can only be stream events now
    settings: Any = None  # the Settings of the routing table this call started on
    served: Any = None  # the Deployment that answered
    est_prompt: int = 0  # the admission's prompt estimate (bills a stream cut before usage)
    body: Any = None  # the validated request (for that estimate when admission made none)
    ttft_ms: float | None = None
    units: int = 1  # what a per-request price is charged for (images: how many)


@dataclass(slots=True)
class Call:
    """One request as the call stage sees it: the table it started on, who asked, its record."""

    gw: Gateway
    router: Router
    headers: dict[bytes, bytes]
    principal: Principal
    rec: CallRecord
    op: Any = None  # endpoints.op.Op: another endpoint than chat (None: a chat completion)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An API served through this pipeline besides chat completions (endpoints/ defines them).

    `parse(raw body, headers)` validates the request and gives (the body routing and admission
    read, chat-shaped where it can be; the Op that says what each deployment is called with).
    `error` renders an error in the endpoint's own shape (None: OpenAI's)."""

    parse: Callable[[bytes, dict[bytes, bytes]], Awaitable[tuple[dict[str, Any], Any]]]
    error: Callable[[E.GatewayError], bytes] | None = None


@dataclass(slots=True)
class Tries:
    """What one failover run did: its failures in order, what it skipped and why."""

    deadline: float | None
    failures: list[tuple[Candidate, E.GatewayError]] = field(default_factory=list)
    skipped: list[tuple[Candidate, str]] = field(default_factory=list)


async def serve(
    gw: Gateway,
    scope: dict[str, Any],
    receive: Any,
    send: Any,
    endpoint: Endpoint | None = None,
) -> None:
    """One call through every stage; `endpoint` None is a chat completion."""
    router = gw.router  # one table for the whole call, whatever a reload does meanwhile
    settings = router.runtime.settings
    st = scope["state"]
    headers: dict[bytes, bytes] = st["headers"]
    rec = CallRecord(request_id=st["request_id"], started=time.monotonic(), settings=settings)
    principal: Principal = st["principal"]
    ticket: accounting.Ticket | None = None
    admitted = False
    op = None
    try:
        raw = await read_body(
            receive, headers, settings.max_request_bytes, settings.body_read_timeout
        )
        if endpoint is None:
            body = validate_chat(parse_json(raw))
        else:
            body, op = await _parsed(endpoint, raw, headers, rec)
        rec.model, rec.stream, rec.body = body["model"], bool(body.get("stream")), body
        if principal.key is not None:
            alias = router.public_of(rec.model) if "/" in rec.model else None
            accounting.check_models(principal, rec.model, alias)
        route = pick_route(router, body, headers)
        ticket = accounting.plan_for(
            principal,
            body,
            lambda: reachable(router, route, principal),
            settings,
            st.get("ip_rate"),
            time.time(),
        )
        if ticket is not None:
            rec.est_prompt = ticket.est_tokens
            await accounting.admit(gw.limits, ticket)
        admitted = True
        if gw.spool.full():
            raise E.ServiceUnavailableError(
                "The gateway cannot record spend right now (its spool is full); retry shortly.",
                code="spend_spool_full",
                headers={"Retry-After": "5"},
            )
        # From here on a client that goes away cancels us at once: in the queue, upstream, relaying.
        watch = DisconnectWatch(receive)
        try:
            await gw.limiter.acquire()
            try:
                call = Call(gw, router, headers, principal, rec, op)
                try:
                    ready = await call_with_failover(call, route, body)
                except E.GatewayError as err:  # context length: bigger models, condensation
                    ready = await recover(call, route, body, err)
                info = _info(ready, rec, headers, route)
                if ticket is not None:
                    info += ticket.headers
                if rec.stream:
                    rec.ttft_ms = round((time.monotonic() - rec.started) * 1000, 2)
                await relay(ready, info, send, rec)
            finally:
                gw.limiter.release()
        except asyncio.CancelledError:
            if not watch.disconnected:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            rec.status, rec.disconnected = 499, True
        finally:
            watch.stop()
    except E.GatewayError as err:
        rec.status, rec.error = err.status, err.code or err.type
        if not rec.responded:
            await _send_failure(send, err, endpoint)
    except ClientDisconnected:
        rec.status, rec.disconnected = 499, True
    finally:
        await accounting.finish(gw, rec, principal, ticket if admitted else None)
        if settings.log_requests:
            record_call(rec)


# POST /v1/chat/completions, plain or streamed: serve itself (no extra frame on the hot path).
chat_completions = serve


async def _parsed(
    endpoint: Endpoint, raw: bytes, headers: dict[bytes, bytes], rec: CallRecord
) -> tuple[dict[str, Any], Any]:
    body, op = await endpoint.parse(raw, headers)
    if op is not None:
        rec.units = op.units
    return body, op


async def _send_failure(send: Any, err: E.GatewayError, endpoint: Endpoint | None) -> None:
    if endpoint is not None and endpoint.error is not None:
        await send_json(send, err.status, endpoint.error(err), error_headers(err))
    else:
        await send_error(send, err)


def reachable(router: Router, route: Route, principal: Principal) -> list[Any]:
    """Every deployment a call may end up on: the model's, its fallbacks' and its
    context-window fallbacks' (those the caller may use)."""
    out = [c.deployment for c in route.candidates]
    policy = route.policy
    for name in (*policy.fallbacks, *policy.context_window_fallbacks):
        if accounting.allowed(principal, name):
            try:
                out += [c.deployment for c in router.route(name).candidates]
            except E.GatewayError:
                continue
    return out


def pick_route(router: Router, body: dict[str, Any], headers: dict[bytes, bytes]) -> Route:
    """The model (and X-Provider, seed 000) -> its Route."""
    forced = headers.get(b"x-provider")
    return router.route(body["model"], forced.decode("latin-1").strip() if forced else None)


async def recover(call: Call, route: Route, body: dict[str, Any], first: E.GatewayError) -> Ready:
    """After the call stage failed: on a context-length error, the bigger-context fallbacks,
    then (non-streamed) condensation and one more try. Any other error is raised as it is."""
    rec = call.rec
    cfg = rec.settings.condensation
    if not condense.is_context_error(first, cfg):
        raise first
    for name in route.policy.context_window_fallbacks:
        if not accounting.allowed(call.principal, name):
            continue  # a model the key may not use is no fallback for it
        try:
            bigger = call.router.route(name)
        except E.ModelNotFoundError:
            continue
        if rec.attempts >= rec.settings.max_attempts:
            raise first  # max_attempts bounds the whole request
        try:
            return await call_with_failover(call, bigger, body)
        except E.GatewayError as err:
            if not condense.is_context_error(err, cfg):
                raise
    if rec.stream or not cfg.enabled or rec.attempts >= rec.settings.max_attempts:
        raise first
    if call.op is not None and not call.op.condensable:
        raise first  # condensation rewrites a chat body; other APIs' bodies go as they came
    smaller = await _condensed(call, route, body)
    if smaller is None:
        raise first
    return await call_with_failover(call, route, smaller)


async def call_with_failover(call: Call, route: Route, body: dict[str, Any]) -> Ready:
    """Try the route's deployments in its strategy's order, then its fallback models' ones.
    Each deployment may be retried (`num_retries`) on retryable failures; hedged models race
    the first two. Nothing is retried once a byte went to the client (relay comes later)."""
    rec = call.rec
    settings = rec.settings
    limit = settings.max_request_time
    tries = Tries(rec.started + limit if limit is not None else None)
    tags = _tags(call.headers) if b"x-llm-proxy-tags" in call.headers else None
    routes: list[Route] = [route]
    i = 0
    while i < len(routes) and rec.attempts < settings.max_attempts:
        r = routes[i]
        i += 1
        cands = r.candidates
        if call.op is not None:
            cands = call.op.able(cands)
            if not cands and r is route:
                raise call.op.unable(r.model)
        if tags is not None:
            cands = _tagged(cands, tags)
            if not cands and r is route:
                raise _no_tagged(r.model, tags)
        now = time.monotonic()
        plan, passed = order(r.policy.strategy, cands, now, rec.stream, call.gw.rng)
        if passed:
            tries.skipped += passed
        if r is route:
            d = r.decision
            d.at, d.strategy, d.order, d.skipped = now, r.policy.strategy, plan, passed
            d.served_by, d.attempts = None, 0
        ready = await _try_plan(call, r, plan, body, tries)
        if ready is not None:
            if r is route:
                d = r.decision
                d.served_by, d.attempts = ready.cand.deployment.label, rec.attempts
            return ready
        if i == 1:  # model fallbacks, resolved only when the model itself failed
            for name in route.policy.fallbacks:
                if not accounting.allowed(call.principal, name):
                    continue  # a model the key may not use is no fallback for it
                try:
                    routes.append(call.router.route(name))
                except E.ModelNotFoundError:
                    continue  # a fallback that is not (or no longer) routable is skipped
    raise _exhausted(tries)


def _remaining(tries: Tries) -> float | None:
    return None if tries.deadline is None else tries.deadline - time.monotonic()


def _deadline_error() -> E.UpstreamTimeoutError:
    return E.UpstreamTimeoutError(
        "The request ran out of its max_request_time.", code="request_deadline"
    )


def _out_of_time(cand: Candidate) -> tuple[Candidate, E.GatewayError]:
    return cand, _deadline_error()


async def _try_plan(
    call: Call, r: Route, plan: list[Candidate], body: dict[str, Any], tries: Tries
) -> Ready | None:
    """The plan's deployments in order, each retried as configured; None when all failed."""
    rec = call.rec
    settings = rec.settings
    start = 0
    if r.policy.hedge is not None and len(plan) >= 2:
        ready, start = await _maybe_hedged(call, r, plan, body, tries)
        if ready is not None or start < 0:
            return ready
    for cand in plan[start:]:
        retries = 0
        n_retries = cand.deployment.num_retries
        if n_retries is None:
            n_retries = settings.num_retries
        while rec.attempts < settings.max_attempts:
            remaining = _remaining(tries)
            if remaining is not None and remaining <= 0:
                return None
            try:
                rec.attempts += 1
                if remaining is not None and remaining < _total_timeout(cand):
                    async with asyncio.timeout(remaining):
                        return await attempt(
                            call.gw, cand, body, call.headers, call.principal, rec.stream, call.op
                        )
                return await attempt(
                    call.gw, cand, body, call.headers, call.principal, rec.stream, call.op
                )
            except Refused:  # another request holds its half-open probe
                rec.attempts -= 1
                tries.skipped.append((cand, "circuit half-open, probing"))
                break
            except TimeoutError:
                tries.failures.append(_out_of_time(cand))
                return None
            except E.GatewayError as err:
                tries.failures.append((cand, err))
                if not retryable(err):
                    raise
                if retries < n_retries and same_deployment_again(err):
                    wait = backoff(retries, settings.retry_backoff, err)
                    left = _remaining(tries)  # after the failure, not before the attempt
                    if wait <= settings.max_retry_wait and (left is None or wait < left):
                        retries += 1
                        await asyncio.sleep(wait)
                        continue
                break  # on to the next deployment
    return None


async def _maybe_hedged(
    call: Call, r: Route, plan: list[Candidate], body: dict[str, Any], tries: Tries
) -> tuple[Ready | None, int]:
    """(the answer, or None and where the plain loop should go on: -1 for nowhere)."""
    rec = call.rec
    assert r.policy.hedge is not None
    delay = hedge_delay(r.policy.hedge, plan[0].stats, rec.stream)
    if delay is None or rec.attempts + 2 > rec.settings.max_attempts:
        return None, 0
    try:
        async with asyncio.timeout(_remaining(tries)):  # None: no deadline
            ready = await _hedged(call, plan, body, tries, delay)
    except TimeoutError:
        tries.failures.append(_out_of_time(plan[0]))
        return None, -1
    # Only the primary ran and failed (before the delay): the next one is plan[1].
    return ready, 2 if rec.hedged else 1


async def _hedged(
    call: Call, plan: list[Candidate], body: dict[str, Any], tries: Tries, delay: float
) -> Ready | None:
    """Race plan[0] against plan[1] started after `delay` (routing/hedge.py)."""
    rec = call.rec
    first, second = plan[0], plan[1]
    by_error: dict[int, Candidate] = {}

    async def run(cand: Candidate) -> Ready:
        rec.attempts += 1
        try:
            return await attempt(
                call.gw, cand, body, call.headers, call.principal, rec.stream, call.op
            )
        except E.GatewayError as err:
            by_error[id(err)] = cand
            raise
        except Refused:
            rec.attempts -= 1
            tries.skipped.append((cand, "circuit half-open, probing"))
            raise

    def fatal(exc: BaseException) -> bool:
        return isinstance(exc, E.GatewayError) and not retryable(exc)

    winner, errors, rec.hedged = await race(
        lambda: run(first), lambda: run(second), delay, Ready.discard, fatal
    )
    for exc in errors:
        if isinstance(exc, E.GatewayError):
            tries.failures.append((by_error.get(id(exc), first), exc))
            if winner is None and not retryable(exc):
                raise exc
        elif isinstance(exc, Refused):
            continue
        elif winner is None:
            raise exc
        else:  # one side hit a bug, the other answered: serve the answer, keep the trace
            log.error("hedged attempt failed", exc_info=exc, extra={"request_id": rec.request_id})
    return winner


def _total_timeout(cand: Candidate) -> float:
    d = cand.deployment
    return (d.timeouts or d.provider.timeouts).total


def _tags(headers: dict[bytes, bytes]) -> frozenset[str] | None:
    raw = headers.get(b"x-llm-proxy-tags")
    if not raw:
        return None
    tags = frozenset(t.strip() for t in raw.decode("latin-1").split(",") if t.strip())
    return tags or None


def _tagged(cands: tuple[Candidate, ...], tags: frozenset[str]) -> tuple[Candidate, ...]:
    return tuple(c for c in cands if tags <= c.deployment.tags)


def _no_tagged(model: str, tags: frozenset[str]) -> E.InvalidRequestError:
    return E.InvalidRequestError(
        f"No deployment of '{model}' has the tags {', '.join(sorted(tags))}.",
        param="X-LLM-Proxy-Tags",
        code="no_matching_deployment",
    )


def _exhausted(tries: Tries) -> E.GatewayError:
    """One deployment failed: its own typed error. Several, or none available: seed 003's 503."""
    failures, skipped, deadline = tries.failures, tries.skipped, tries.deadline
    tried = {id(c.stats) for c, _ in failures}
    if len(tried) == 1 and not skipped:
        return failures[-1][1]
    now = time.monotonic()
    errors = [_row(c, type(err).__name__, err.status, err.code) for c, err in failures]
    errors += [_row(c, "Skipped", None, why) for c, why in skipped if id(c.stats) not in tried]
    details = {
        "attempts": len(failures),
        "providers_tried": list(dict.fromkeys(c.deployment.provider.name for c, _ in failures)),
        "errors": errors,
    }
    if not failures and deadline is not None and now >= deadline:
        return _deadline_error()
    headers = {}
    if not failures and skipped:
        waits = [w for c, _ in skipped if (w := _wait_of(c, now)) is not None]
        if waits:
            headers["Retry-After"] = str(max(1, math.ceil(min(waits))))
        if all(why.startswith("cooling down") for _, why in skipped):
            return E.RateLimitError(
                "Every deployment of this model is cooling down after rate limits; retry later.",
                code="rate_limit_exceeded",
                headers=headers,
                details=details,
            )
    return E.ServiceUnavailableError(
        "All providers are currently unavailable",
        code="providers_unavailable",
        headers=headers,
        details=details,
    )


def _row(c: Candidate, error_type: str, status: int | None, code: str | None) -> dict[str, Any]:
    """One entry of seed 003's `details.errors`."""
    d = c.deployment
    return {
        "provider": d.provider.name,
        "deployment": d.model,
        "error_type": error_type,
        "status": status,
        "code": code,
    }


def _wait_of(c: Candidate, now: float) -> float | None:
    """Seconds until a skipped deployment may be tried again."""
    s = c.stats
    at = s.breaker.retry_at(s.policy.breaker_timeout)
    if at is None and now < s.cooldown_until:
        at = s.cooldown_until
    return at - now if at is not None else None


def _info(
    ready: Ready, rec: CallRecord, headers: dict[bytes, bytes], route: Route
) -> list[tuple[bytes, bytes]]:
    """Routing transparency: response headers, and seed 003's `_proxy_info` when asked."""
    d = ready.cand.deployment
    rec.provider, rec.upstream_model, rec.deployment = d.provider.name, d.model, d.label
    rec.served = d
    elapsed = time.monotonic() - rec.started
    out = [
        (b"x-llm-proxy-provider", d.provider.name.encode()),
        (b"x-llm-proxy-deployment", d.label.encode("utf-8", "replace")),
        (b"x-llm-proxy-attempts", str(rec.attempts).encode()),
        (b"x-llm-proxy-latency-ms", f"{elapsed * 1000:.1f}".encode()),
    ]
    if rec.condensed:
        out.append((b"x-llm-proxy-condensed", rec.condensed.encode()))
    if rec.hedged:
        out.append((b"x-llm-proxy-hedged", b"true"))
    if (
        ready.resp is None
        and ready.wire is ready.cand.deployment.provider.wire  # a chat completion
        and headers.get(b"x-proxy-info", b"").lower() in (b"true", b"1")
    ):
        info = {
            "provider": d.provider.name,
            "deployment": d.label,
            "model": route.model,
            "strategy": route.policy.strategy,
            "attempt_number": rec.attempts,
            "response_time": round(elapsed, 4),
            "request_id": rec.request_id,
            "hedged": rec.hedged,
            "condensed": rec.condensed,
        }
        body = ready.out.rstrip()
        if body.endswith(b"}"):
            ready.out = body[:-1] + b',"_proxy_info":' + orjson.dumps(info) + b"}"
    return out


async def _condensed(call: Call, route: Route, body: dict[str, Any]) -> dict[str, Any] | None:
    """The request with its older messages summarised (or, failing that, dropped)."""
    rec, summaries = call.rec, call.gw.summaries
    cfg = rec.settings.condensation
    _, older, _ = condense.split(body["messages"])
    if not older:
        return None  # one long message: nothing older to summarise, so the error stands
    key = condense.cache_key(older)
    summary = summaries.get(key, time.monotonic())
    if summary is None:
        ask = condense.summary_request(cfg.model or route.model, older, cfg)
        try:
            summary = await asyncio.wait_for(_summarise(call, ask), cfg.timeout)
        except (TimeoutError, E.GatewayError) as err:
            log.warning(
                "condensation fell back to truncation",
                extra={"request_id": rec.request_id, "reason": type(err).__name__},
            )
            summary = None
        if summary:
            summaries.put(key, summary, time.monotonic(), cfg.cache_ttl)
    if summary:
        rec.condensed = "summary"
        return condense.with_summary(body, summary)
    rec.condensed = "truncated"
    return condense.truncated(body)


async def _summarise(call: Call, ask: dict[str, Any]) -> str | None:
    """Ask the summariser (a plain call, routed like any other); its text, if any."""
    rec = call.rec
    inner = CallRecord(request_id=rec.request_id, started=time.monotonic(), settings=rec.settings)
    # The client's X-LLM-Proxy-Tags pick deployments of its own model, not the summariser's.
    headers = {k: v for k, v in call.headers.items() if k != b"x-llm-proxy-tags"}
    sub = Call(call.gw, call.router, headers, call.principal, inner)
    ready = await call_with_failover(sub, call.router.route(ask["model"]), ask)
    rec.attempts += inner.attempts
    doc = orjson.loads(ready.out)
    try:
        text = doc["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return text.strip() if isinstance(text, str) and text.strip() else None


__all__ = [
    "Call",
    "CallRecord",
    "Endpoint",
    "call_with_failover",
    "chat_completions",
    "pick_route",
    "recover",
    "serve",
]
