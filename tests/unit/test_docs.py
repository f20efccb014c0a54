"""Docs that cannot drift: every setting, provider field, CLI command and endpoint is in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_proxy.cli import cli
from llm_proxy.config.schema import (
    CompletionProbes,
    CondensationConfig,
    DeploymentConfig,
    HealthConfig,
    HedgeConfig,
    IpLimitsConfig,
    ModelConfig,
    ModelInfo,
    Price,
    ProviderConfig,
    RouteLimit,
    Settings,
    SpendConfig,
    Timeouts,
    WebSocketConfig,
)
from llm_proxy.providers.registry import SPECS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize(
    "field",
    [
        *Settings.model_fields,
        *ProviderConfig.model_fields,
        *DeploymentConfig.model_fields,
        *ModelConfig.model_fields,
        *Timeouts.model_fields,
        *HealthConfig.model_fields,
        *CompletionProbes.model_fields,
        *CondensationConfig.model_fields,
        *Price.model_fields,
        *IpLimitsConfig.model_fields,
        *RouteLimit.model_fields,
        *SpendConfig.model_fields,
        *WebSocketConfig.model_fields,
        *ModelInfo.model_fields,
    ],
)
def test_every_config_key_is_documented(field: str) -> None:
    assert f"{field}:" in README or f"{field}: " in README, f"README lacks config key {field!r}"


def test_every_cli_command_is_documented() -> None:
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in cli.registered_commands]
    assert names
    for name in names:
        assert f"llm-proxy {name}" in README, name
    groups = [g.name for g in cli.registered_groups]
    assert {"keys", "teams", "db"} <= set(groups)
    for group in cli.registered_groups:
        for c in group.typer_instance.registered_commands:
            assert c.name and c.name in README.split(f"llm-proxy {group.name}", 1)[1], c.name


@pytest.mark.parametrize("name", sorted(n for n in SPECS if n != "mock"))
def test_every_builtin_provider_is_documented(name: str) -> None:
    assert f"`{name}`" in README, name


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/health",
        "/healthz",
        "/metrics",
        "/docs",
        "/providers",
        "/admin/routes/{model}",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/images/generations",
        "/v1/audio/speech",
        "/v1/audio/transcriptions",
        "/v1/models",
        "/v1/models/{id}",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/proxy",
        "/proxy/stream",
        "/api/v1/inference",
        "/api/v1/inference/stream",
        "/api/v1/models",
        "/api/v1/models/top?limit=",
        "/api/v1/models/providers",
        "/ws",
    ],
)
def test_every_endpoint_is_documented(path: str) -> None:
    assert f"{path}`" in README or f"{path}," in README, path


@pytest.mark.parametrize("field", sorted(HedgeConfig.model_fields))
def test_every_hedge_setting_is_documented(field: str) -> None:
    assert field in README.split("## Routing and failover")[0], field


@pytest.mark.parametrize(
    "header",
    [
        "x-llm-proxy-provider",
        "x-llm-proxy-deployment",
        "x-llm-proxy-attempts",
        "x-llm-proxy-latency-ms",
        "x-llm-proxy-hedged",
        "x-llm-proxy-condensed",
        "X-Proxy-Info",
        "X-LLM-Proxy-Tags",
    ],
)
def test_every_routing_header_is_documented(header: str) -> None:
    assert f"`{header}" in README, header
