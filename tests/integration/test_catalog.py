"""Seed 001's model catalog (/api/v1/models) over real HTTP: entries, pagination, filters, the
/{id} routes with slashed ids, top, search, providers, seed-001 errors, config `info`
overrides, per-key visibility and a rebuild on reload."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from llm_proxy.catalog import CatalogCache
from tests.conftest import MASTER_KEY, GatewayFactory, RunningGateway
from tests.integration.accounts import new_key, request

# Nothing here calls upstream: the base URLs only have to parse.
CONFIG = f"""\
master_key: {MASTER_KEY}
reload_interval: 0.1
providers:
  - name: openai
    type: openai
    base_url: http://127.0.0.1:9/v1
    api_key: sk-not-used-openai
  - name: anthropic
    type: anthropic
    base_url: http://127.0.0.1:9
    api_key: sk-not-used-anthropic
  - name: together
    type: openai
    base_url: http://127.0.0.1:9/v1
    api_key: sk-not-used-together
models:
  - name: gpt-4o
    provider: openai
    model: gpt-4o
  - name: gpt-4o-mini
    provider: openai
    model: gpt-4o-mini
    price: {{input: 0.15, output: 0.6}}
  - name: claude-sonnet
    provider: anthropic
    model: claude-3-5-sonnet-20241022
  - name: meta-llama/llama-3.1-70b
    provider: together
    model: house-llama-deployment
  - name: echo
    provider: mock
    model: echo
  - name: house-model
    provider: openai
    model: gpt-4.1
    price: {{input: 2, output: 8}}
    info:
      name: House Model
      description: Our code assistant
      context_length: 32000
      max_completion_tokens: 2000
      supported_parameters: [temperature, stop]
      is_moderated: true
"""

OPENAI_PARAMS = [
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "frequency_penalty",
    "presence_penalty", "stop", "stream", "n", "seed", "logit_bias", "logprobs", "top_logprobs",
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort", "user",
]  # fmt: skip
ANTHROPIC_PARAMS = [
    "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "stop", "stream",
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort", "user",
]  # fmt: skip

GPT_4O = {
    "id": "openai/gpt-4o",
    "name": "GPT-4o",
    "description": "GPT-4o via openai",
    "context_length": 128000,
    "pricing": {"prompt": "0.0025", "completion": "0.01"},  # genai-prices: $2.50 / $10 per 1M
    "supported_parameters": OPENAI_PARAMS,
    "is_moderated": False,
    "max_completion_tokens": 16384,
}
GPT_4O_MINI = {
    "id": "openai/gpt-4o-mini",
    "name": "GPT-4o Mini",
    "description": "GPT-4o Mini via openai",
    "context_length": 128000,
    "pricing": {"prompt": "0.00015", "completion": "0.0006"},  # the configured price
    "supported_parameters": OPENAI_PARAMS,
    "is_moderated": False,
    "max_completion_tokens": 16384,
}
CLAUDE = {
    "id": "anthropic/claude-sonnet",
    "name": "Claude Sonnet",
    "description": "Claude Sonnet via anthropic",
    "context_length": 200000,
    "pricing": {"prompt": "0.003", "completion": "0.015"},  # genai-prices: $3 / $15 per 1M
    "supported_parameters": ANTHROPIC_PARAMS,
    "is_moderated": False,
    "max_completion_tokens": 8192,
}
LLAMA = {
    "id": "meta-llama/llama-3.1-70b",  # a public name with a slash is the id
    "name": "Llama 3.1 70b",
    "description": "Llama 3.1 70b via together",
    "context_length": 131072,  # the family is known from the public name
    "pricing": {"prompt": None, "completion": None},  # neither config nor genai-prices knows it
    "supported_parameters": OPENAI_PARAMS,
    "is_moderated": False,
    "max_completion_tokens": None,
}
ECHO = {
    "id": "mock/echo",
    "name": "Echo",
    "description": "Echo via mock",
    "context_length": None,
    "pricing": {"prompt": "0", "completion": "0"},
    "supported_parameters": OPENAI_PARAMS,
    "is_moderated": False,
    "max_completion_tokens": None,
}
HOUSE = {
    "id": "openai/house-model",
    "name": "House Model",
    "description": "Our code assistant",
    "context_length": 32000,
    "pricing": {"prompt": "0.002", "completion": "0.008"},
    "supported_parameters": ["temperature", "stop"],
    "is_moderated": True,
    "max_completion_tokens": 2000,
}
ALL = [GPT_4O, GPT_4O_MINI, CLAUDE, LLAMA, ECHO, HOUSE]


@pytest.fixture
def rg(gateway_factory: GatewayFactory) -> RunningGateway:
    return gateway_factory(CONFIG)


def get(rg: RunningGateway, path: str, key: str = MASTER_KEY) -> tuple[int, Any]:
    status, headers, doc = request(rg.url, "GET", path, key=key)
    assert headers["content-type"] == "application/json"
    return status, doc


def error(status: int, message: str, kind: str, field: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": status, "message": message, "type": kind, "param": field}
    if field is not None:
        err["details"] = {"field": field, "message": message}
    return {"error": err}


def bad_int(name: str, raw: str, lo: int = 1, hi: int = 100) -> dict[str, Any]:
    return error(
        400, f"'{name}' must be an integer from {lo} to {hi}; got '{raw}'.", "validation", name
    )


def not_found(model_id: str) -> dict[str, Any]:
    msg = f"The model '{model_id}' does not exist or you do not have access to it."
    return error(404, msg, "not_found")


def test_list_returns_every_configured_model_in_config_order_with_seed_fields(
    rg: RunningGateway,
) -> None:
    status, doc = get(rg, "/api/v1/models")
    assert status == 200
    assert doc == {
        "data": ALL,
        "pagination": {"total": 6, "limit": 50, "offset": 0, "hasMore": False},
    }
    # A trailing slash is the same list.
    assert get(rg, "/api/v1/models/") == (200, doc)


def test_pagination_pages_through_with_has_more(rg: RunningGateway) -> None:
    _, first = get(rg, "/api/v1/models?limit=4")
    assert first == {
        "data": ALL[:4],
        "pagination": {"total": 6, "limit": 4, "offset": 0, "hasMore": True},
    }
    _, second = get(rg, "/api/v1/models?limit=4&offset=4")
    assert second == {
        "data": ALL[4:],
        "pagination": {"total": 6, "limit": 4, "offset": 4, "hasMore": False},
    }
    _, exact = get(rg, "/api/v1/models?limit=3&offset=3")
    assert exact["pagination"] == {"total": 6, "limit": 3, "offset": 3, "hasMore": False}
    _, past = get(rg, "/api/v1/models?offset=10")
    assert past == {
        "data": [],
        "pagination": {"total": 6, "limit": 50, "offset": 10, "hasMore": False},
    }
    _, most = get(rg, "/api/v1/models?limit=100")
    assert most["pagination"]["limit"] == 100 and len(most["data"]) == 6


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("limit=101", bad_int("limit", "101")),
        ("limit=0", bad_int("limit", "0")),
        ("limit=ten", bad_int("limit", "ten")),
        ("limit=1_0", bad_int("limit", "1_0")),
        ("offset=-1", bad_int("offset", "-1", 0, 2**31)),
    ],
)
def test_bad_limit_or_offset_is_a_seed_001_validation_error(
    rg: RunningGateway, query: str, expected: dict[str, Any]
) -> None:
    assert get(rg, f"/api/v1/models?{query}") == (400, expected)


def test_provider_and_search_filters_combine_before_paging(rg: RunningGateway) -> None:
    _, doc = get(rg, "/api/v1/models?provider=openai")
    assert doc["data"] == [GPT_4O, GPT_4O_MINI, HOUSE]
    assert doc["pagination"] == {"total": 3, "limit": 50, "offset": 0, "hasMore": False}

    # The provider part of a slashed public name is its own prefix, not the serving provider.
    _, doc = get(rg, "/api/v1/models?provider=meta-llama")
    assert doc["data"] == [LLAMA]
    _, doc = get(rg, "/api/v1/models?provider=together")
    assert doc["data"] == [] and doc["pagination"]["total"] == 0

    # search: id, name and description, case-insensitively.
    _, doc = get(rg, "/api/v1/models?search=MINI")
    assert doc["data"] == [GPT_4O_MINI]
    _, doc = get(rg, "/api/v1/models?search=code%20assistant")  # the description only
    assert doc["data"] == [HOUSE]
    _, doc = get(rg, "/api/v1/models?search=via%20openai")
    assert doc["data"] == [GPT_4O, GPT_4O_MINI]

    _, doc = get(rg, "/api/v1/models?provider=openai&search=gpt&limit=1&offset=0")
    assert doc == {
        "data": [GPT_4O],
        "pagination": {"total": 2, "limit": 1, "offset": 0, "hasMore": True},
    }


def test_one_model_by_id_including_slashed_ids_and_the_public_name_alias(
    rg: RunningGateway,
) -> None:
    assert get(rg, "/api/v1/models/openai/gpt-4o") == (200, {"data": GPT_4O})
    assert get(rg, "/api/v1/models/meta-llama/llama-3.1-70b") == (200, {"data": LLAMA})
    assert get(rg, "/api/v1/models/meta-llama%2Fllama-3.1-70b") == (200, {"data": LLAMA})
    assert get(rg, "/api/v1/models/claude-sonnet") == (200, {"data": CLAUDE})
    assert get(rg, "/api/v1/models/openai/nope") == (404, not_found("openai/nope"))
    # The upstream model id is not an id of the catalog.
    assert get(rg, "/api/v1/models/anthropic/claude-3-5-sonnet-20241022")[0] == 404


def test_parameters_and_pricing_routes_work_with_slashed_ids(rg: RunningGateway) -> None:
    assert get(rg, "/api/v1/models/anthropic/claude-sonnet/parameters") == (
        200,
        {"data": {"model": "anthropic/claude-sonnet", "supported_parameters": ANTHROPIC_PARAMS}},
    )
    assert get(rg, "/api/v1/models/openai/house-model/parameters") == (
        200,
        {"data": {"model": "openai/house-model", "supported_parameters": ["temperature", "stop"]}},
    )
    assert get(rg, "/api/v1/models/openai/gpt-4o/pricing") == (
        200,
        {"data": {"model": "openai/gpt-4o", "pricing": {"prompt": "0.0025", "completion": "0.01"}}},
    )
    assert get(rg, "/api/v1/models/meta-llama/llama-3.1-70b/pricing") == (
        200,
        {
            "data": {
                "model": "meta-llama/llama-3.1-70b",
                "pricing": {"prompt": None, "completion": None},
            }
        },
    )
    assert get(rg, "/api/v1/models/openai/nope/pricing") == (404, not_found("openai/nope"))
    assert get(rg, "/api/v1/models/openai/nope/parameters") == (404, not_found("openai/nope"))


def test_top_orders_by_context_length_and_leaves_unknown_windows_out(rg: RunningGateway) -> None:
    def short(e: dict[str, Any]) -> dict[str, Any]:
        return {k: e[k] for k in ("id", "name", "context_length", "pricing")}

    assert get(rg, "/api/v1/models/top") == (
        200,
        {"data": [short(e) for e in (CLAUDE, LLAMA, GPT_4O, GPT_4O_MINI, HOUSE)]},
    )
    assert get(rg, "/api/v1/models/top?limit=2") == (200, {"data": [short(CLAUDE), short(LLAMA)]})
    assert get(rg, "/api/v1/models/top?limit=500") == (400, bad_int("limit", "500"))


def test_search_needs_q_and_reports_the_total_before_the_limit(rg: RunningGateway) -> None:
    def short(e: dict[str, Any]) -> dict[str, Any]:
        return {k: e[k] for k in ("id", "name", "description")}

    assert get(rg, "/api/v1/models/search?q=CODE") == (
        200,
        {"data": [short(HOUSE)], "query": "CODE", "total": 1},
    )
    assert get(rg, "/api/v1/models/search?q=via&limit=2") == (
        200,
        {"data": [short(GPT_4O), short(GPT_4O_MINI)], "query": "via", "total": 5},
    )
    assert get(rg, "/api/v1/models/search?q=zzz") == (200, {"data": [], "query": "zzz", "total": 0})
    missing = error(400, "'q' is required: the search query.", "validation", "q")
    assert get(rg, "/api/v1/models/search") == (400, missing)
    assert get(rg, "/api/v1/models/search?q=%20") == (400, missing)
    assert get(rg, "/api/v1/models/search?q=gpt&limit=x") == (400, bad_int("limit", "x"))


def test_providers_and_models_of_one_provider(rg: RunningGateway) -> None:
    assert get(rg, "/api/v1/models/providers") == (
        200,
        {"data": ["anthropic", "meta-llama", "mock", "openai"]},
    )
    assert get(rg, "/api/v1/models/providers/openai") == (
        200,
        {
            "data": [
                {"id": "openai/gpt-4o", "name": "GPT-4o", "context_length": 128000},
                {"id": "openai/gpt-4o-mini", "name": "GPT-4o Mini", "context_length": 128000},
                {"id": "openai/house-model", "name": "House Model", "context_length": 32000},
            ],
            "provider": "openai",
        },
    )
    assert get(rg, "/api/v1/models/providers/nobody") == (
        404,
        error(404, "No models from the provider 'nobody'.", "not_found"),
    )


def test_a_key_limited_to_one_model_sees_only_that_model(rg: RunningGateway) -> None:
    key = new_key(rg.url, name="claude-only", models=["claude-sonnet"])["key"]
    assert get(rg, "/api/v1/models", key) == (
        200,
        {"data": [CLAUDE], "pagination": {"total": 1, "limit": 50, "offset": 0, "hasMore": False}},
    )
    assert get(rg, "/api/v1/models/providers", key) == (200, {"data": ["anthropic"]})
    assert get(rg, "/api/v1/models/anthropic/claude-sonnet", key) == (200, {"data": CLAUDE})
    # Models the key may not use are not found, rather than forbidden: nothing leaks.
    assert get(rg, "/api/v1/models/openai/gpt-4o", key) == (404, not_found("openai/gpt-4o"))
    assert get(rg, "/api/v1/models/openai/gpt-4o/pricing", key)[0] == 404
    assert get(rg, "/api/v1/models/providers/openai", key)[0] == 404
    assert get(rg, "/api/v1/models/search?q=gpt", key) == (
        200,
        {"data": [], "query": "gpt", "total": 0},
    )
    top = get(rg, "/api/v1/models/top", key)[1]["data"]
    assert [e["id"] for e in top] == ["anthropic/claude-sonnet"]

    globbed = new_key(rg.url, name="gpt-only", models=["gpt-*"])["key"]
    _, doc = get(rg, "/api/v1/models", globbed)
    assert doc["data"] == [GPT_4O, GPT_4O_MINI]


def test_a_request_without_a_key_is_refused_before_the_catalog(rg: RunningGateway) -> None:
    status, _, doc = request(rg.url, "GET", "/api/v1/models", key="")
    assert status == 401
    # Refused by the gateway before the route, still in seed 001's shape (with OpenAI's keys).
    assert doc["error"]["code"] == 401 and doc["error"]["type"] == "authentication"
    assert "message" in doc["error"] and "param" in doc["error"]


def test_the_catalog_is_rebuilt_only_for_a_new_routing_table(rg: RunningGateway) -> None:
    cache = CatalogCache()
    built = cache.get(rg.gw.router.runtime)
    assert cache.get(rg.gw.router.runtime) is built

    path: Path = rg.config_path
    edited = CONFIG.replace("name: House Model", "name: House Model v2")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(edited)
    tmp.replace(path)
    deadline = time.monotonic() + 10
    while rg.gw.reloads == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rg.gw.reloads == 1
    assert cache.get(rg.gw.router.runtime) is not built
    _, doc = get(rg, "/api/v1/models/openai/house-model")
    assert doc["data"]["name"] == "House Model v2"
