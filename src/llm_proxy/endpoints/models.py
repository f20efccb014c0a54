"""GET /v1/models and /v1/models/{id}: the models the caller may use, in OpenAI's shape.

https://platform.openai.com/docs/api-reference/models/list
Listed: every configured public model the key (and its team) may use, and the built-in mock
models. Models reached only through routing rules (`gpt-*` -> openai) are callable but not
listed: there is no finite list of them.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from llm_proxy import accounting
from llm_proxy import errors as E
from llm_proxy.auth import ANONYMOUS, Principal
from llm_proxy.gateway import Gateway

MOCK_MODELS = ("mock/echo", "mock/lorem")


def listing(gw: Gateway, principal: Principal) -> list[dict[str, Any]]:
    runtime = gw.router.runtime
    created = int(gw.started)
    out = []
    for name, deps in runtime.models.items():
        if accounting.allowed(principal, name):
            out.append(_model(name, deps[0].provider.name, created))
    if "mock" in runtime.providers:
        for name in MOCK_MODELS:
            if name not in runtime.models and accounting.allowed(principal, name):
                out.append(_model(name, "mock", created))
    return out


def _model(name: str, owner: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def build_models(gw: Gateway) -> APIRouter:
    router = APIRouter(tags=["openai"])

    @router.get("/v1/models", summary="List the models this key may use")
    async def list_models(request: Request) -> Response:
        principal = request.scope.get("state", {}).get("principal", ANONYMOUS)
        return _json({"object": "list", "data": listing(gw, principal)})

    @router.get("/v1/models/{model:path}", summary="Retrieve one model")
    async def get_model(model: str, request: Request) -> Response:
        principal = request.scope.get("state", {}).get("principal", ANONYMOUS)
        for m in listing(gw, principal):
            if m["id"] == model:
                return _json(m)
        err = E.NotFoundError(
            f"The model '{model}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
        return _json(err.body(), 404)

    return router
