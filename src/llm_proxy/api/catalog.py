"""Seed 001's model catalog under /api/v1/models: list, one model, its parameters and pricing,
top by context length, search, providers. Entries come from llm_proxy/catalog.py, built once
per routing table; each request only filters the models the caller's key may use.

Errors are in seed 001's shape ({"error": {"code", "message", "type", "param", "details"?}}),
rendered here rather than by the app's OpenAI-shaped handlers: query parameters are checked by
hand, so FastAPI's validation error never fires on these routes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from llm_proxy import accounting
from llm_proxy import errors as E
from llm_proxy.auth import ANONYMOUS, Principal
from llm_proxy.catalog import Catalog, CatalogCache, Entry
from llm_proxy.endpoints.seeds import seed1_error
from llm_proxy.gateway import Gateway

log = logging.getLogger("llm_proxy")

PREFIX = "/api/v1/models"
MAX_LIMIT = 100
_INT = re.compile(r"-?[0-9]+")


def _may_use(p: Principal, e: Any) -> bool:
    """A model is listed when the key may call it by its catalog id or its public name."""
    return accounting.allowed(p, e.id) or accounting.allowed(p, e.model)


def _json(doc: Any) -> Response:
    return Response(orjson.dumps(doc), media_type="application/json")


def _answer(make: Callable[[], Any]) -> Response:
    """200 with make()'s document, or its error in seed 001's shape."""
    try:
        return _json(make())
    except E.GatewayError as err:
        return Response(
            seed1_error(err), err.status, headers=err.headers, media_type="application/json"
        )
    except Exception:
        log.exception("catalog request failed")
        body = seed1_error(E.GatewayError("Internal server error."))
        return Response(body, 500, media_type="application/json")


def int_param(q: QueryParams, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter in [lo, hi]; anything else is a 400 naming it."""
    raw = q.get(name)
    if raw is None:
        return default
    if len(raw) > 12 or not _INT.fullmatch(raw.strip()) or not lo <= int(raw) <= hi:
        raise E.InvalidRequestError(
            f"'{name}' must be an integer from {lo} to {hi}; got {raw!r}.", param=name
        )
    return int(raw)


def _principal(request: Request) -> Principal:
    got = request.scope.get("state", {}).get("principal", ANONYMOUS)
    return got if isinstance(got, Principal) else ANONYMOUS


def visible(cat: Catalog, p: Principal) -> list[Entry]:
    """The entries whose model the key (and its team) may use."""
    if p.key is None and p.team is None:
        return list(cat.entries)
    return [e for e in cat.entries if _may_use(p, e)]


def _missing(model_id: str) -> E.NotFoundError:
    return E.NotFoundError(
        f"The model '{model_id}' does not exist or you do not have access to it."
    )


def _short(e: Entry, *keys: str) -> dict[str, Any]:
    return {k: e.doc[k] for k in keys}


def list_doc(got: list[Entry], q: QueryParams) -> dict[str, Any]:
    """GET /api/v1/models: filtered by provider and search, then one page."""
    limit = int_param(q, "limit", 50, 1, MAX_LIMIT)
    offset = int_param(q, "offset", 0, 0, 2**31)
    if provider := q.get("provider"):
        got = [e for e in got if e.provider == provider]
    if search := q.get("search", "").strip().lower():
        got = [e for e in got if search in e.haystack]
    page = got[offset : offset + limit]
    pagination = {
        "total": len(got),
        "limit": limit,
        "offset": offset,
        "hasMore": offset + len(page) < len(got),
    }
    return {"data": [e.doc for e in page], "pagination": pagination}


def top_doc(got: list[Entry], q: QueryParams) -> dict[str, Any]:
    """Largest context windows first; models with an unknown window are left out."""
    limit = int_param(q, "limit", 10, 1, MAX_LIMIT)
    known = [e for e in got if e.doc["context_length"] is not None]
    known.sort(key=lambda e: -e.doc["context_length"])  # stable: ties keep config order
    return {"data": [_short(e, "id", "name", "context_length", "pricing") for e in known[:limit]]}


def search_doc(got: list[Entry], q: QueryParams) -> dict[str, Any]:
    query = q.get("q", "")
    if not query.strip():
        raise E.InvalidRequestError("'q' is required: the search query.", param="q")
    limit = int_param(q, "limit", 20, 1, MAX_LIMIT)
    needle = query.strip().lower()
    found = [e for e in got if needle in e.haystack]
    data = [_short(e, "id", "name", "description") for e in found[:limit]]
    return {"data": data, "query": query, "total": len(found)}


def provider_doc(got: list[Entry], provider: str) -> dict[str, Any]:
    mine = [e for e in got if e.provider == provider]
    if not mine:
        raise E.NotFoundError(f"No models from the provider '{provider}'.")
    return {"data": [_short(e, "id", "name", "context_length") for e in mine], "provider": provider}


class _Lookup:
    """The current table's catalog, seen by one request's caller."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.cache = CatalogCache()

    def entries(self, request: Request) -> list[Entry]:
        return visible(self.cache.get(self.gw.router.runtime), _principal(request))

    def find(self, request: Request, model_id: str) -> Entry | None:
        e = self.cache.get(self.gw.router.runtime).find(model_id)
        if e is None or not _may_use(_principal(request), e):
            return None
        return e

    def one(self, request: Request, model_id: str) -> Entry:
        e = self.find(request, model_id)
        if e is None:
            raise _missing(model_id)
        return e

    def field(self, request: Request, model_id: str, key: str, suffix: str) -> dict[str, Any]:
        """/{id}/parameters and /{id}/pricing; a model whose own id ends in the suffix wins
        only when the shorter id is no model."""
        e = self.find(request, model_id)
        if e is None:
            whole = self.find(request, f"{model_id}/{suffix}")
            if whole is not None:
                return {"data": whole.doc}
            raise _missing(model_id)
        return {"data": {"model": e.id, key: e.doc[key]}}


def _query(**described: str) -> dict[str, Any]:
    """OpenAPI entries for query parameters that are documented but checked by hand."""
    params = [
        {"name": n, "in": "query", "required": n == "q", "schema": {"type": t}, "description": d}
        for n, spec in described.items()
        for t, _, d in [spec.partition(": ")]
    ]
    return {"parameters": params}


def build_catalog(gw: Gateway) -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["catalog"])
    look = _Lookup(gw)

    @r.get(
        "",
        summary="List models (seed 001)",
        openapi_extra=_query(
            provider="string: the id's provider part, exactly",
            search="string: in id, name and description, any case",
            limit="integer: 1 to 100 (default 50)",
            offset="integer: 0 or more (default 0)",
        ),
    )
    async def list_models(request: Request) -> Response:
        return _answer(lambda: list_doc(look.entries(request), request.query_params))

    @r.get(
        "/top",
        summary="Models with the largest context windows",
        openapi_extra=_query(limit="integer: 1 to 100 (default 10)"),
    )
    async def top(request: Request) -> Response:
        return _answer(lambda: top_doc(look.entries(request), request.query_params))

    @r.get(
        "/search",
        summary="Search models by id, name and description",
        openapi_extra=_query(q="string: the query", limit="integer: 1 to 100 (default 20)"),
    )
    async def search(request: Request) -> Response:
        return _answer(lambda: search_doc(look.entries(request), request.query_params))

    @r.get("/providers", summary="Providers of the models this key may use")
    async def providers(request: Request) -> Response:
        return _answer(lambda: {"data": sorted({e.provider for e in look.entries(request)})})

    @r.get("/providers/{provider}", summary="Models of one provider")
    async def by_provider(provider: str, request: Request) -> Response:
        return _answer(lambda: provider_doc(look.entries(request), provider))

    # Ids have slashes: these two come before /{model_id:path}, which would take them whole.
    @r.get("/{model_id:path}/parameters", summary="A model's supported parameters")
    async def parameters(model_id: str, request: Request) -> Response:
        return _answer(lambda: look.field(request, model_id, "supported_parameters", "parameters"))

    @r.get("/{model_id:path}/pricing", summary="A model's pricing (USD per 1K tokens)")
    async def model_pricing(model_id: str, request: Request) -> Response:
        return _answer(lambda: look.field(request, model_id, "pricing", "pricing"))

    @r.get("/{model_id:path}", summary="One model")
    async def get_model(model_id: str, request: Request) -> Response:
        if not model_id:  # "/api/v1/models/" is the list
            return await list_models(request)
        return _answer(lambda: {"data": look.one(request, model_id).doc})

    return r
