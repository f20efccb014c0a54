"""build_app(gateway) -> the ASGI app; create_app() is the uvicorn factory each worker calls."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_proxy import __version__
from llm_proxy.api.admin import build_admin
from llm_proxy.api.catalog import build_catalog
from llm_proxy.api.openapi import complete, pipeline_paths
from llm_proxy.api.ws import build_ws
from llm_proxy.auth import ensure_master_key
from llm_proxy.config.load import load_config, process_env
from llm_proxy.endpoints import (
    audio,
    completions,
    embeddings,
    images,
    messages,
    responses,
    seeds,
)
from llm_proxy.endpoints.models import build_models
from llm_proxy.errors import GatewayError, InvalidRequestError, NotFoundError
from llm_proxy.gateway import Gateway
from llm_proxy.observability.logging import setup_logging
from llm_proxy.observability.middleware import GatewayMiddleware
from llm_proxy.pipeline import Endpoint, chat_completions, serve
from llm_proxy.routing.health import iso, overall, provider_views, route_view, summary

log = logging.getLogger("llm_proxy")


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _error(err: GatewayError) -> Response:
    return Response(
        err.to_json(), status_code=err.status, media_type="application/json", headers=err.headers
    )


def build_fastapi(gw: Gateway) -> FastAPI:
    """The framework app: health, metrics, docs and the error handlers that keep 4xx in OpenAI shape."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        # Imports and config are long-lived: keep them out of every later full GC scan.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await gw.aclose()

    app = FastAPI(
        title="llm-proxy",
        version=__version__,
        summary="An OpenAI-compatible LLM gateway.",
        lifespan=lifespan,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error(NotFoundError("Unknown path.", code="unknown_url"))
        err = InvalidRequestError(
            str(exc.detail),
            status=exc.status_code,
            code="method_not_allowed" if exc.status_code == 405 else None,
        )
        return _error(err)

    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> Response:
        return _error(exc)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        # Starlette answers an unhandled error itself (plain text) before the gateway
        # middleware could: this keeps it in OpenAI shape, with the request id to find the log.
        rid = request.scope.get("state", {}).get("request_id")
        log.error("unhandled error", exc_info=exc, extra={"request_id": rid})
        return _error(
            GatewayError(
                "The gateway hit an internal error; the request id identifies it in the logs.",
                code="internal_error",
            )
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query"))
        return _error(
            InvalidRequestError(str(first.get("msg", "invalid request")), param=loc or None)
        )

    @app.get("/health", tags=["health"])
    async def health() -> Response:
        """Seed 001's health document, with seed 003's provider counts."""
        counts = summary(provider_views(gw, time.monotonic()))
        last = max((r.at for r in gw.prober.results.values()), default=0.0)
        return _json(
            {
                "status": overall(counts),
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "uptime": round(time.time() - gw.started, 3),
                "version": gw.version,
                "environment": gw.runtime.settings.environment,
                "providers": counts,
                "last_check": iso(last),
            }
        )

    @app.get("/providers", tags=["routing"])
    async def providers() -> Response:
        """Seed 003: each provider with status, models, capabilities, circuit state, recent
        latency and error rate."""
        views = provider_views(gw, time.monotonic())
        return _json({"object": "list", "data": views, "summary": summary(views)})

    @app.get("/admin/routes/{model:path}", tags=["admin"])
    async def admin_route(model: str) -> Response:
        """How a model routes now: each deployment's circuit, cooldown, error ratio, latency
        EWMA, in-flight count, and the last routing decision's reason."""
        try:
            route = gw.router.route(model)
        except GatewayError as err:
            return _error(err)
        return _json(route_view(route, time.monotonic()))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Response:
        """Seed 004's health document."""
        s = gw.runtime.settings
        return _json(
            {
                "status": "ok",
                "uptime_seconds": round(time.time() - gw.started, 3),
                "version": gw.version,
                "rate_limit": {"enabled": False, "window_seconds": 60, "max_requests": 0},
                "logging": {"enabled": s.log_requests, "level": s.log_level},
                "cors": {"allow_origins": s.cors_allow_origins},
                "concurrency": {
                    "in_flight": gw.limiter.in_flight,
                    "limit": gw.limiter.limit,
                },
                "config": {"reloads": gw.reloads, "providers": sorted(gw.runtime.providers)},
            }
        )

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, routes=app.routes, summary=app.summary
            )
            schema.setdefault("paths", {}).update(pipeline_paths())
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "The master key or a virtual key (also accepted as X-API-Key).",
            }
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = complete(schema)
        return app.openapi_schema

    app.include_router(build_admin(gw))
    app.include_router(build_models(gw))
    app.include_router(build_catalog(gw))
    app.include_router(build_ws(gw))
    app.openapi = openapi  # type: ignore[method-assign]
    return app


def build_app(gw: Gateway) -> Any:
    """FastAPI wrapped by the gateway middleware, which also serves the hot paths and CORS."""
    inner = build_fastapi(gw)
    fast: dict[str, Any] = {"/v1/chat/completions": chat_completions}  # POST only
    for path, endpoint in ENDPOINTS.items():
        fast[path] = _serving(endpoint)
    fast["/v1/messages/count_tokens"] = messages.count_tokens
    return GatewayMiddleware(inner, gw, fast)  # CORS included (seed 004 semantics)


# The other APIs served by the call pipeline (POST only): endpoints/ defines each.
ENDPOINTS: dict[str, Endpoint] = {
    "/v1/completions": completions.ENDPOINT,
    "/v1/embeddings": embeddings.ENDPOINT,
    "/v1/images/generations": images.ENDPOINT,
    "/v1/audio/speech": audio.SPEECH,
    "/v1/audio/transcriptions": audio.TRANSCRIPTIONS,
    "/v1/messages": messages.ENDPOINT,
    "/v1/responses": responses.ENDPOINT,
    "/proxy": seeds.PROXY,  # seed 004
    "/proxy/stream": seeds.PROXY_STREAM,
    "/api/v1/inference": seeds.INFERENCE,  # seed 001
    "/api/v1/inference/stream": seeds.INFERENCE_STREAM,
}


def _serving(endpoint: Endpoint) -> Any:
    async def handler(gw: Gateway, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await serve(gw, scope, receive, send, endpoint)

    return handler


def create_gateway(config_path: str | None, env: dict[str, str] | None = None) -> Gateway:
    env = process_env() if env is None else env
    loaded = load_config(config_path, env)
    digest, _ = ensure_master_key(loaded.settings.master_key, loaded.settings.data_dir)
    return Gateway(loaded, env, digest)


def create_app() -> Any:
    """uvicorn factory: reads LLM_PROXY_CONFIG (set by `llm-proxy serve`)."""
    env = process_env()
    gw = create_gateway(env.get("LLM_PROXY_CONFIG") or None, env)
    setup_logging(gw.runtime.settings.log_level)
    return build_app(gw)


__all__ = ["build_app", "create_app", "create_gateway"]
