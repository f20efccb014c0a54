"""Pydantic models for the config file: settings, providers, models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llm_proxy.providers.registry import SPECS

PROVIDER_TYPES = (
    "openai",
    "anthropic",
    "gemini",
    "vertex",
    "bedrock",
    "cohere",
    "azure",
    "azure_foundry",
    "mock",
)
# Providers that switch on from their environment variables (see providers/registry.py).
BUILTIN_PROVIDER_NAMES = frozenset(
    {
        "openai",
        "openrouter",
        "xai",
        "groq",
        "together",
        "deepseek",
        "mistral",
        "fireworks",
        "perplexity",
        "blackbox",
        "ollama",
        "vllm",
        "llamacpp",
        "lmstudio",
        "localai",
        "openai_compat",
        "anthropic",
        "gemini",
        "vertex",
        "azure",
        "cohere",
        "bedrock",
    }
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(Strict):
    """Seconds. first_byte bounds the wait for the response head and each later read."""

    connect: float = Field(10.0, gt=0)
    first_byte: float = Field(300.0, gt=0)
    total: float = Field(600.0, gt=0)


class ProviderConfig(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal[
        "openai",
        "anthropic",
        "gemini",
        "vertex",
        "bedrock",
        "cohere",
        "azure",
        "azure_foundry",
        "mock",
    ] = "openai"
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # Forward the client's own upstream key (an Authorization header that is not the gateway key).
    forward_client_key: bool = False
    timeouts: Timeouts | None = None
    api_version: str | None = None  # Azure: the api-version query parameter
    # Vertex AI: project, region and a service-account JSON file (else GOOGLE_APPLICATION_CREDENTIALS)
    project: str | None = None
    location: str | None = None
    credentials_file: str | None = None
    region: str | None = None  # bedrock: AWS region (else AWS_REGION / AWS_DEFAULT_REGION)
    max_connections: int = Field(1000, ge=1)
    enabled: bool = True

    @field_validator("headers")
    @classmethod
    def _header_values(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if any(ord(c) < 0x20 and c != "\t" for c in name + value):
                raise ValueError(f"header {name!r} contains control characters")
        return v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/") if v else v


class DeploymentConfig(Strict):
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(Strict):
    name: str = Field(min_length=1)
    deployments: list[DeploymentConfig] = Field(min_length=1)
    # Other public models to try, in order, when every deployment of this one failed.
    fallbacks: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `{name, provider, model}` is shorthand for one deployment.
        if isinstance(data, dict) and "deployments" not in data and "provider" in data:
            data = dict(data)
            dep = {"provider": data.pop("provider"), "model": data.pop("model", data.get("name"))}
            if "params" in data:
                dep["params"] = data.pop("params")
            data["deployments"] = [dep]
        return data


class Settings(Strict):
    """The single settings object: file values, then env overrides, then CLI flags."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_requests: bool = False
    data_dir: str = "data"
    master_key: str | None = None
    # Seconds: default total timeout for upstream calls (providers may override).
    request_timeout: float = Field(600.0, gt=0)
    connect_timeout: float = Field(10.0, gt=0)
    first_byte_timeout: float = Field(300.0, gt=0)
    # Concurrency cap on inference requests; the excess waits up to queue_timeout, then 503.
    max_concurrent_requests: int = Field(1000, ge=0)
    max_queued_requests: int = Field(1000, ge=0)
    queue_timeout: float = Field(10.0, ge=0)
    max_request_bytes: int = Field(10 * 1024 * 1024, ge=0)
    # A client must deliver its whole body within this many seconds.
    body_read_timeout: float = Field(30.0, gt=0)
    cors_allow_origins: list[str] = Field(default_factory=lambda: ["*"])
    # Paths served without a key.
    public_paths: list[str] = Field(
        default_factory=lambda: [
            "/health",
            "/healthz",
            "/metrics",
            "/docs",
            "/redoc",
            "/openapi.json",
        ]
    )
    model_provider_map: dict[str, str] = Field(default_factory=dict)
    default_provider: str | None = None
    reload_interval: float = Field(1.0, gt=0)
    # Retries of the same deployment on a retryable failure (connection errors, timeouts, 408,
    # 409, 429, 5xx), before failing over to the next deployment; full-jitter backoff.
    num_retries: int = Field(0, ge=0, le=10)
    retry_backoff: float = Field(0.5, ge=0)  # seconds, doubled per retry, capped at 8
    max_retry_wait: float = Field(10.0, ge=0)  # a longer Retry-After fails over instead of waiting
    max_attempts: int = Field(6, ge=1, le=50)  # across all deployments and fallbacks
    environment: str = "production"
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)

    @field_validator("cors_allow_origins", "public_paths", mode="before")
    @classmethod
    def _csv(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("model_provider_map", mode="before")
    @classmethod
    def _map(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_model_provider_map(v)
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        v = v.upper()
        # Seed 001 documents debug/info/warn/error; pino and winston users also write these.
        return {"WARN": "WARNING", "TRACE": "DEBUG", "FATAL": "CRITICAL"}.get(v, v)

    def reference_problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """Cross-field problems as (field path, message): duplicate names, unknown providers."""
        out: list[tuple[tuple[Any, ...], str]] = []
        seen: set[str] = set()
        for i, p in enumerate(self.providers):
            if p.name in seen:
                out.append((("providers", i, "name"), f"duplicate provider name {p.name!r}"))
            seen.add(p.name)
            spec = SPECS.get(p.name)
            if (
                p.type == "openai"
                and not p.base_url
                and not (spec and spec.default_base_url and spec.format == "openai")
            ):
                out.append(
                    (("providers", i, "base_url"), "required (no built-in default for this name)")
                )
        known = seen | {"mock"}
        models: set[str] = set()
        for i, m in enumerate(self.models):
            if m.name in models:
                out.append((("models", i, "name"), f"duplicate model name {m.name!r}"))
            models.add(m.name)
            for j, d in enumerate(m.deployments):
                if d.provider not in known:
                    dep_path: tuple[Any, ...] = ("models", i, "deployments", j, "provider")
                    out.append((dep_path, f"unknown provider {d.provider!r}"))
        for pattern, prov in self.model_provider_map.items():
            if prov not in known and prov not in BUILTIN_PROVIDER_NAMES:
                out.append((("model_provider_map", pattern), f"unknown provider {prov!r}"))
        return out


def parse_model_provider_map(text: str) -> dict[str, str]:
    """`gpt-*=openai,local-*=vllm` -> {"gpt-*": "openai", "local-*": "vllm"} (seed 004)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        pattern, sep, provider = part.partition("=")
        if not sep or not pattern.strip() or not provider.strip():
            raise ValueError(f"MODEL_PROVIDER_MAP entry {part!r} is not pattern=provider")
        out[pattern.strip()] = provider.strip()
    return out
