"""One attempt at one deployment: send, read until the answer can be committed, then relay it.

A plain answer is ready once its whole body is read and translated. A stream is ready at its
first real content (text, reasoning, a tool call or a finish reason): the events before that are
held back with the response head, so an upstream that fails before its first content can still
be failed over without the client seeing anything. After commit, a failure can only end the
stream with an error event.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.api.http import send_json
from llm_proxy.auth import Principal
from llm_proxy.formats import WireFormat, openai_chat
from llm_proxy.gateway import Gateway
from llm_proxy.limits.concurrency import ConcurrencyLimiter
from llm_proxy.routing.balance import Candidate
from llm_proxy.routing.state import PROBE, REFUSED
from llm_proxy.runtime import Deployment
from llm_proxy.upstream.client import UpstreamResponse

log = logging.getLogger("llm_proxy")

# In translated (OpenAI-shaped) events: something the client would see. The role chunk's
# `"content":""` is not. JSON strings escape their quotes, so text inside content cannot match.
# The regex is for upstreams that write JSON with spaces; compact JSON is checked with plain
# byte searches, which cost a tenth of a regex scan per byte (measured with callgrind).
_REAL_CONTENT = re.compile(
    rb'"(?:content|reasoning_content|reasoning|refusal)"\s*:\s*"(?!")'
    rb'|"tool_calls"\s*:\s*\[|"finish_reason"\s*:\s*"'
)
_ERROR_EVENT = re.compile(rb'(?:^|\n)data: ?(\{\s*"error"\s*:.*)')


def has_content(out: bytes) -> bool:
    """Whether translated events carry anything the client would see (see _REAL_CONTENT)."""
    if b'"finish_reason":"' in out or b'"tool_calls":[' in out:
        return True
    for key in (b'"content":"', b'"reasoning_content":"', b'"reasoning":"', b'"refusal":"'):
        n = out.count(key)
        if n and n != out.count(key + b'"'):
            return True
    return b'": ' in out and _REAL_CONTENT.search(out) is not None


class Refused(Exception):
    """The deployment's breaker refused the attempt (its half-open probe is taken)."""


@dataclass(slots=True)
class Ready:
    """An attempt that may be committed: a whole plain answer, or a stream at its first content."""

    cand: Candidate
    started: float  # monotonic, when the attempt began
    out: bytes  # plain: the client body; stream: the events held back until now
    resp: UpstreamResponse | None = None  # stream: still open
    chunks: AsyncIterator[bytes] | None = None
    state: Any = None
    dec: Any = None
    finished: bool = False  # the stream ended before commit; `out` holds all of it
    usage: dict[str, Any] | None = None
    probe: bool = False  # this attempt holds its deployment's half-open probe
    slot: ConcurrencyLimiter | None = None  # the deployment's concurrency slot, until the end
    wire: WireFormat | None = None  # what the answer is read with (None: the deployment's own)
    content_type: bytes = b"application/json"  # of a plain answer

    def discard(self) -> None:
        """A hedge that lost the race after it was ready: close it, no verdict on the upstream."""
        self.free()
        if self.resp is not None:
            self.resp.close()
            self.resp = None
            self.cand.stats.cancelled(self.probe)

    def free(self) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None


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
    payload: bytes,
    headers: dict[bytes, bytes],
    principal: Principal,
    stream: bool,
    target: Any = None,
) -> UpstreamResponse:
    """Send one attempt's payload (from the wire format's to_upstream) upstream; an upstream
    error status becomes a typed GatewayError. `target` (endpoints.op.Target): another
    endpoint of the deployment than chat, with its own URL and extra headers."""
    p = deployment.provider
    up_headers, forwarded = _upstream_headers(deployment, headers, principal)
    if target is not None and target.headers:
        up_headers = {**up_headers, **target.headers}
    if p.token_source is not None:  # short-lived credentials (Vertex AI), refreshed off the loop
        up_headers = {**up_headers, "Authorization": await p.token_source.authorization()}
    if target is not None:
        url = target.stream_url if stream else target.url
    else:
        url = deployment.stream_url if stream else deployment.url
    if p.signer is not None:  # request signing (AWS SigV4 for Bedrock) covers the final bytes
        up_headers = p.signer.sign("POST", url, up_headers, payload)
    resp = await gw.transport(p.type).send(
        p.pool,
        url,
        up_headers,
        payload,
        deployment.timeouts or p.timeouts,
        p.max_connections,
    )
    if resp.status >= 400:
        raw = await resp.read()
        secrets = p.secrets
        if forwarded:
            token = up_headers[p.auth_header].removeprefix(p.auth_scheme)
            secrets = (*secrets, token.encode("latin-1"))
        wire = target.wire if target is not None else p.wire
        raise wire.from_upstream_error(
            resp.status, raw, dict(resp.headers), forwarded, p.type == "mock", secrets
        )
    return resp


async def attempt(
    gw: Gateway,
    cand: Candidate,
    body: dict[str, Any],
    headers: dict[bytes, bytes],
    principal: Principal,
    stream: bool,
    op: Any = None,
) -> Ready:
    """Run one attempt up to the point of commit. Failures settle the stats and are raised;
    raises Refused when the breaker says no. A ready stream's stats are settled by relay().
    `op` (endpoints.op.Op): a call other than a chat completion, or one in another API's shape;
    it names the wire format and URL each deployment is called with."""
    stats, d = cand.stats, cand.deployment
    target = op.target(d) if op is not None else None
    wire = target.wire if target is not None else d.provider.wire
    # Translated first: a request the format itself refuses never reaches (or judges) upstream.
    payload = wire.to_upstream(body, d.model, d.params, stream)
    # The deployment's own concurrency cap first: a wait in its queue (503 when full: retryable,
    # so the next deployment is tried) says nothing of the upstream, so it never reaches stats.
    held = gw.deployment_limiter(d)  # the deployment's slot while this attempt has it
    if held is not None:
        await held.acquire()
    t0 = time.monotonic()
    admitted = stats.begin(t0)
    if admitted == REFUSED:
        _give_back(held, None)
        raise Refused(cand.label)
    probe = admitted == PROBE
    resp: UpstreamResponse | None = None
    try:
        if stream:
            resp = await call(gw, d, payload, headers, principal, stream, target)
            ready = await _until_content(resp, cand, body, t0, probe, wire)
            ready.slot, held = held, None  # relay() gives it back when the stream ends
            return ready
        try:
            resp = await call(gw, d, payload, headers, principal, stream, target)
            raw = await resp.read()
        finally:
            if held is not None:
                held.release()
                held = None
        out, usage = wire.from_upstream(raw, body["model"], int(time.time()))
        ctype = wire.content_type or _content_type(resp)
    except E.GatewayError as err:
        _give_back(held, resp)
        now = time.monotonic()
        stats.failed(now, err, now - t0, probe)
        raise
    except BaseException:  # cancelled (client gone, hedge lost, deadline) or a bug
        _give_back(held, resp)
        stats.cancelled(probe)
        raise
    latency = time.monotonic() - t0
    total = usage.get("total_tokens") if usage else None
    stats.answered(t0 + latency, latency, total if isinstance(total, int) else 0)
    return Ready(cand, t0, out, usage=usage, wire=wire, content_type=ctype)


def _content_type(resp: UpstreamResponse) -> bytes:
    h = resp.headers
    return str(h.get("content-type", h.get("Content-Type", "application/octet-stream"))).encode(
        "latin-1", "replace"
    )


def _give_back(held: ConcurrencyLimiter | None, resp: UpstreamResponse | None) -> None:
    if held is not None:
        held.release()
    if resp is not None:
        resp.close()


def _tokens(usage: dict[str, Any] | None) -> int:
    if not usage:
        return 0
    total = usage.get("total_tokens")
    return total if isinstance(total, int) else 0


async def _until_content(
    resp: UpstreamResponse,
    cand: Candidate,
    body: dict[str, Any],
    t0: float,
    probe: bool,
    fmt: WireFormat,
) -> Ready:
    ctype = resp.headers.get("content-type", resp.headers.get("Content-Type", ""))
    if fmt.stream_content_type not in ctype:
        await resp.read()
        raise E.UpstreamError(f"The upstream provider did not stream (content-type {ctype!r}).")
    so = body.get("stream_options")
    wants_usage = isinstance(so, dict) and bool(so.get("include_usage"))
    state = fmt.new_stream_state(body["model"], wants_usage, int(time.time()))
    dec = fmt.decoder()
    translate = fmt.from_upstream_events
    seen = fmt.has_content or has_content
    held = b""
    chunks = resp.iter_chunks()
    async for chunk in chunks:
        segment = dec.segment(chunk)
        if segment and (out := translate(segment, state)):
            if not seen(out):
                _raise_error_event(out, cand)
                held += out
                continue
            cand.stats.first_token(time.monotonic() - t0)
            return Ready(cand, t0, held + out, resp, chunks, state, dec, probe=probe, wire=fmt)
    tail = fmt.finish_stream(state, dec.flush())
    if not seen(tail):
        _raise_error_event(tail, cand)
    cand.stats.first_token(time.monotonic() - t0)
    return Ready(
        cand, t0, held + tail, resp, None, state, dec, finished=True, probe=probe, wire=fmt
    )


# An error event has no HTTP status: the one its type stands for (else 502), so that the OpenAI
# format's own error mapping (context length, credentials, redaction) decides the rest.
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "rate_limit_error": 429,
    "service_unavailable_error": 503,
    "overloaded_error": 503,
    "timeout_error": 504,
}


def _raise_error_event(out: bytes, cand: Candidate) -> None:
    """An error event before any content: raise it as the failure of this attempt."""
    m = _ERROR_EVENT.search(out) if b'"error"' in out else None
    if m is None:
        return
    raise event_error(m.group(1), cand.deployment.provider.secrets)


def event_error(payload: bytes, secrets: tuple[bytes, ...]) -> E.GatewayError:
    """An OpenAI-style error event's payload -> the failure it reports (secrets masked)."""
    try:
        err = orjson.loads(payload)["error"]
        etype = err.get("type") if isinstance(err, dict) else None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        etype = None
    status = _STATUS_OF_TYPE.get(etype if isinstance(etype, str) else "", 502)
    return openai_chat.from_upstream_error(status, payload, {}, False, False, secrets)


async def relay(
    ready: Ready,
    info: list[tuple[bytes, bytes]],
    send: Any,
    rec: Any,
) -> None:
    """Commit: send the head and what was held back, then relay the rest as it arrives."""
    if ready.resp is None:
        rec.responded, rec.status, rec.usage = True, 200, ready.usage
        await send_json(send, 200, ready.out, [(b"content-type", ready.content_type), *info])
        return
    resp, state, stats = ready.resp, ready.state, ready.cand.stats
    fmt = ready.wire or ready.cand.deployment.provider.wire
    stream_error = fmt.stream_error or _openai_stream_error
    failure: E.GatewayError | None = None
    verdict = True  # False: the gateway itself failed, which says nothing of the upstream
    tail = b""
    try:
        top = fmt.stream_headers
        if top is None:
            top = ((b"content-type", _content_type(resp)), (b"cache-control", b"no-cache"))
        head = {"type": "http.response.start", "status": 200, "headers": [*top, *info]}
        await send(head)
        rec.responded, rec.status = True, 200
        if ready.finished:
            tail = ready.out
        else:
            await send({"type": "http.response.body", "body": ready.out, "more_body": True})
            dec, translate = ready.dec, fmt.from_upstream_events
            assert ready.chunks is not None
            last = ready.out
            async for chunk in ready.chunks:
                segment = dec.segment(chunk)
                if segment and (out := translate(segment, state)):
                    last = out
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            tail = fmt.finish_stream(state, dec.flush())
            # An error event ends a stream: the last events are the only place to look for one
            # (a scan of every chunk would cost more than the relay itself).
            if b'"error"' in tail or (b'"error"' in last and _ERROR_EVENT.search(last)):
                failure = (
                    openai_chat.truncated()
                    if b'"error"' in tail
                    else E.UpstreamError("The upstream stream sent an error event.")
                )
    except E.GatewayError as err:
        failure = err
        rec.status, rec.error = err.status, err.code or err.type
        tail = stream_error(err, state)
    except asyncio.CancelledError:
        stats.cancelled(ready.probe)  # the client went away: no verdict on the upstream
        raise
    except Exception:
        # Headers are gone: the only honest ending left is an error event, never a silent cut.
        log.exception("stream relay failed", extra={"request_id": rec.request_id})
        rec.status, rec.error, verdict = 500, "internal_error", False
        tail = stream_error(
            E.GatewayError("The gateway failed while relaying the stream.", code="internal_error"),
            state,
        )
    finally:
        resp.close()
        ready.free()
        rec.usage, rec.chunks = state.usage, state.chunks
        if rec.usage is None and state.chunks > 1:
            # Cut short (client gone, upstream failed) before the usage chunk: OpenAI-style
            # streams carry about one token per chunk after the role chunk.
            rec.usage = {"completion_tokens": state.chunks - 1, "estimated": True}
    now = time.monotonic()
    if not verdict:
        stats.cancelled(ready.probe)
    elif failure is None:
        stats.ok(now, now - ready.started, _tokens(rec.usage))
    else:
        stats.failed(now, failure, now - ready.started, ready.probe)
    if fmt.abort_on_failure and (failure is not None or not verdict):
        return  # no final chunk: the server closes the connection, the client sees the cut
    await send({"type": "http.response.body", "body": tail, "more_body": False})


def _openai_stream_error(err: E.GatewayError, state: Any) -> bytes:
    return openai_chat.stream_error(err)


__all__ = ["Ready", "Refused", "attempt", "call", "event_error", "relay"]
