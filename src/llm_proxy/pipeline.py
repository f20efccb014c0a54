"""The chat request pipeline: authenticate -> validate -> admit -> route -> call -> relay -> record.

Authentication runs in the gateway middleware (observability.middleware); the rest is here, one
small function per stage. Later stages (cache, budgets, failover) slot in as new functions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from llm_proxy import errors as E
from llm_proxy.api.http import (
    ClientDisconnected,
    DisconnectWatch,
    read_body,
    send_error,
    send_json,
)
from llm_proxy.auth import Principal
from llm_proxy.canonical.chat import parse_json, validate_chat
from llm_proxy.formats import WireFormat, openai_chat
from llm_proxy.gateway import Gateway
from llm_proxy.observability.logging import record_call
from llm_proxy.routing.retry import backoff, retryable, same_deployment_again
from llm_proxy.routing.router import Router
from llm_proxy.runtime import Deployment
from llm_proxy.upstream.client import UpstreamResponse

log = logging.getLogger("llm_proxy")

_SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


@dataclass(slots=True)
class CallRecord:
    """What the record stage keeps about one call (logs now; spend and traces later)."""

    request_id: str
    started: float
    model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    status: int = 0
    usage: dict[str, Any] | None = None
    chunks: int = 0
    disconnected: bool = False
    error: str | None = None
    responded: bool = False  # the response head went out: errors can only be stream events now


async def chat_completions(gw: Gateway, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST /v1/chat/completions, plain or streamed."""
    router = gw.router  # one table for the whole call, whatever a reload does meanwhile
    settings = router.runtime.settings
    st = scope["state"]
    headers: dict[bytes, bytes] = st["headers"]
    rec = CallRecord(request_id=st["request_id"], started=time.perf_counter())
    try:
        raw = await read_body(
            receive, headers, settings.max_request_bytes, settings.body_read_timeout
        )
        body = validate_chat(parse_json(raw))
        rec.model, rec.stream = body["model"], bool(body.get("stream"))
        # From here on a client that goes away cancels us at once: in the queue, upstream, relaying.
        watch = DisconnectWatch(receive)
        try:
            await gw.limiter.acquire()
            try:
                plan = route(router, body, headers)
                await call_with_failover(gw, plan, body, headers, st["principal"], send, rec)
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
            await send_error(send, err)
    except ClientDisconnected:
        rec.status, rec.disconnected = 499, True
    finally:
        if settings.log_requests:
            record_call(rec)


def route(
    router: Router, body: dict[str, Any], headers: dict[bytes, bytes]
) -> tuple[Deployment, ...]:
    """The model (and X-Provider, seed 000) -> candidate deployments, then its fallbacks' ones."""
    forced = headers.get(b"x-provider")
    plan = router.resolve(body["model"], forced.decode("latin-1").strip() if forced else None)
    for other in router.runtime.fallbacks.get(body["model"], ()):
        try:
            plan += router.resolve(other)
        except E.ModelNotFoundError:
            continue  # a fallback that is not (or no longer) routable is skipped
    return plan


def _upstream_headers(
    deployment: Deployment, headers: dict[bytes, bytes], principal: Principal
) -> tuple[dict[str, str], bool]:
    p = deployment.provider
    if p.forward_client_key and principal.via != b"authorization":
        # Seed 004's precedence: the client's own Authorization (not our gateway key) wins.
        own = headers.get(b"authorization")
        if own:
            token = own.decode("latin-1").partition(" ")[2].strip()
            return {**p.headers, p.auth_header: p.auth_scheme + token}, True
    return p.headers, False


async def call(
    gw: Gateway,
    deployment: Deployment,
    body: dict[str, Any],
    headers: dict[bytes, bytes],
    principal: Principal,
    stream: bool,
) -> UpstreamResponse:
    """Send one attempt upstream; an upstream error status becomes a typed GatewayError."""
    p = deployment.provider
    payload = p.wire.to_upstream(body, deployment.model, deployment.params, stream)
    up_headers, forwarded = _upstream_headers(deployment, headers, principal)
    if p.token_source is not None:  # short-lived credentials (Vertex AI), refreshed off the loop
        up_headers = {**up_headers, "Authorization": await p.token_source.authorization()}
    url = deployment.stream_url if stream else deployment.url
    if p.signer is not None:  # request signing (AWS SigV4 for Bedrock) covers the final bytes
        up_headers = p.signer.sign("POST", url, up_headers, payload)
    resp = await gw.transport(p.type).send(
        p.pool,
        url,
        up_headers,
        payload,
        p.timeouts,
        p.max_connections,
    )
    if resp.status >= 400:
        raw = await resp.read()
        secrets = p.secrets
        if forwarded:
            token = up_headers[p.auth_header].removeprefix(p.auth_scheme)
            secrets = (*secrets, token.encode("latin-1"))
        raise p.wire.from_upstream_error(
            resp.status, raw, dict(resp.headers), forwarded, p.type == "mock", secrets
        )
    return resp


async def call_with_failover(
    gw: Gateway,
    plan: tuple[Deployment, ...],
    body: dict[str, Any],
    headers: dict[bytes, bytes],
    principal: Principal,
    send: Any,
    rec: CallRecord,
) -> None:
    """Try the plan's deployments in order (each `num_retries` times for retryable failures),
    then relay the first answer. Nothing is retried once a byte went to the client."""
    settings = gw.router.runtime.settings
    failures: list[tuple[Deployment, E.GatewayError]] = []
    for deployment in plan:
        retries = 0
        while len(failures) < settings.max_attempts:
            rec.provider, rec.upstream_model = deployment.provider.name, deployment.model
            try:
                resp = await call(gw, deployment, body, headers, principal, rec.stream)
                out = None if rec.stream else await _read_plain(resp, deployment, body, rec)
            except E.GatewayError as err:
                failures.append((deployment, err))
                if not retryable(err):
                    raise
                if retries < settings.num_retries and same_deployment_again(err):
                    wait = backoff(retries, settings.retry_backoff, err)
                    if wait <= settings.max_retry_wait:
                        retries += 1
                        await asyncio.sleep(wait)
                        continue
                break  # on to the next deployment
            info = _route_headers(deployment, len(failures) + 1)
            if out is None:
                await relay_stream(resp, deployment.provider.wire, body, info, send, rec)
            else:
                rec.responded, rec.status = True, 200
                await send_json(send, 200, out, [(b"content-type", b"application/json"), *info])
            return
    raise _exhausted(failures)


async def _read_plain(
    resp: UpstreamResponse, deployment: Deployment, body: dict[str, Any], rec: CallRecord
) -> bytes:
    raw = await resp.read()
    out, rec.usage = deployment.provider.wire.from_upstream(raw, body["model"], int(time.time()))
    return out


def _route_headers(deployment: Deployment, attempts: int) -> list[tuple[bytes, bytes]]:
    p = deployment.provider
    return [
        (b"x-llm-proxy-provider", p.name.encode()),
        (b"x-llm-proxy-deployment", f"{p.name}/{deployment.model}".encode("utf-8", "replace")),
        (b"x-llm-proxy-attempts", str(attempts).encode()),
    ]


def _exhausted(failures: list[tuple[Deployment, E.GatewayError]]) -> E.GatewayError:
    """One deployment tried: its own (typed) error. Several: seed 003's 503 with the details."""
    if len({id(d) for d, _ in failures}) <= 1:
        return failures[-1][1]
    providers = list(dict.fromkeys(d.provider.name for d, _ in failures))
    return E.ServiceUnavailableError(
        "All providers are currently unavailable",
        code="providers_unavailable",
        details={
            "attempts": len(failures),
            "providers_tried": providers,
            "errors": [
                {
                    "provider": d.provider.name,
                    "deployment": d.model,
                    "error_type": type(err).__name__,
                    "status": err.status,
                    "code": err.code,
                }
                for d, err in failures
            ],
        },
    )


async def relay_stream(
    resp: UpstreamResponse,
    fmt: WireFormat,
    body: dict[str, Any],
    info: list[tuple[bytes, bytes]],
    send: Any,
    rec: CallRecord,
) -> None:
    """Relay SSE as it arrives (one write per upstream read), ending with [DONE] or an error event."""
    ctype = resp.headers.get("content-type", resp.headers.get("Content-Type", ""))
    if fmt.stream_content_type not in ctype:
        await resp.read()
        raise E.UpstreamError(f"The upstream provider did not stream (content-type {ctype!r}).")
    so = body.get("stream_options")
    wants_usage = isinstance(so, dict) and bool(so.get("include_usage"))
    state = fmt.new_stream_state(body["model"], wants_usage, int(time.time()))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_SSE_HEADERS, *info],
        }
    )
    rec.responded, rec.status = True, 200
    dec = fmt.decoder()
    translate = fmt.from_upstream_events
    try:
        async for chunk in resp.iter_chunks():
            segment = dec.segment(chunk)
            if segment and (out := translate(segment, state)):
                await send({"type": "http.response.body", "body": out, "more_body": True})
        tail = fmt.finish_stream(state, dec.flush())
    except E.GatewayError as err:
        rec.status, rec.error = err.status, err.code or err.type
        tail = openai_chat.stream_error(err)
    except Exception:
        # Headers are gone: the only honest ending left is an error event, never a silent cut.
        log.exception("stream relay failed", extra={"request_id": rec.request_id})
        rec.status, rec.error = 500, "internal_error"
        tail = openai_chat.stream_error(
            E.GatewayError("The gateway failed while relaying the stream.", code="internal_error")
        )
    finally:
        resp.close()
        rec.usage, rec.chunks = state.usage, state.chunks
        if rec.usage is None and state.chunks > 1:
            # Cut short (client gone, upstream failed) before the usage chunk: OpenAI-style
            # streams carry about one token per chunk after the role chunk.
            rec.usage = {"completion_tokens": state.chunks - 1, "estimated": True}
    await send({"type": "http.response.body", "body": tail, "more_body": False})
