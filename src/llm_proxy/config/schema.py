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

    connect: float = Field(default=10.0, gt=0)
    first_byte: float = Field(default=300.0, gt=0)
    total: float = Field(default=600.0, gt=0)


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
    max_connections: int = Field(default=1000, ge=1)
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


class Price(Strict):
    """USD per million tokens (overrides genai-prices for costs and lowest-cost routing)."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)  # cache reads; else `input`
    reasoning: float | None = Field(default=None, ge=0)  # reasoning tokens; else `output`
    # USD per answered call (per image on /v1/images/generations): what tokens do not price,
    # e.g. images, speech and transcriptions.
    per_request: float = Field(default=0.0, ge=0)


class DeploymentConfig(Strict):
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    weight: float = Field(default=1.0, gt=0)  # weighted strategy: share of first attempts
    priority: int = 0  # priority strategy: lower first; ties keep config order
    rpm: int | None = Field(default=None, ge=1)  # capacity: past it this minute, tried last
    tpm: int | None = Field(default=None, ge=1)
    tags: list[str] = Field(default_factory=list)  # X-LLM-Proxy-Tags picks deployments by tag
    num_retries: int | None = Field(default=None, ge=0, le=10)  # else the global num_retries
    timeouts: Timeouts | None = None  # else the provider's
    price: Price | None = None  # else genai-prices, by provider and model
    # Calls in flight at once on this deployment (per worker); the excess waits, then 503.
    max_concurrent: int | None = Field(default=None, ge=1)


Strategy = Literal["priority", "weighted", "least-busy", "lowest-latency", "lowest-cost"]


class HedgeConfig(Strict):
    """Hedged requests: a second deployment is asked when the first token is late."""

    enabled: bool = True
    delay: float | None = Field(default=None, gt=0)  # fixed seconds; else the observed p95 TTFT
    percentile: float = Field(default=95.0, gt=0, lt=100)
    min_samples: int = Field(default=10, ge=1)  # no hedging before this many observed first tokens
    max_delay: float = Field(default=10.0, gt=0)


class ModelInfo(Strict):
    """Seed 001 catalog fields (/api/v1/models); each set one overrides the built-in default."""

    name: str | None = None  # display name; else prettified from the model name
    description: str | None = None  # else "<name> via <provider>"
    context_length: int | None = Field(default=None, ge=1)  # else the catalog's known families
    max_completion_tokens: int | None = Field(default=None, ge=1)
    supported_parameters: list[str] | None = None  # else the wire format's parameters
    is_moderated: bool | None = None  # else false: the gateway runs no moderation


class ModelConfig(Strict):
    name: str = Field(min_length=1)
    deployments: list[DeploymentConfig] = Field(min_length=1)
    strategy: Strategy = "priority"
    # Other public models to try, in order, when every deployment of this one failed.
    fallbacks: list[str] = Field(default_factory=list)
    # Bigger-context models to try, in order, on a context-length error.
    context_window_fallbacks: list[str] = Field(default_factory=list)
    hedge: HedgeConfig | None = None
    info: ModelInfo | None = None  # seed 001 catalog overrides (llm_proxy/catalog.py)

    @field_validator("hedge", mode="before")
    @classmethod
    def _hedge_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return {"enabled": True} if v else None
        return v

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `{name, provider, model}` is shorthand for one deployment.
        if isinstance(data, dict) and "deployments" not in data and "provider" in data:
            data = dict(data)
            dep = {"provider": data.pop("provider"), "model": data.pop("model", data.get("name"))}
            for key in DeploymentConfig.model_fields:
                if key not in ("provider", "model") and key in data:
                    dep[key] = data.pop(key)
            data["deployments"] = [dep]
        return data


class CompletionProbes(Strict):
    """Paid health probes (a tiny chat call per deployment), off unless models are listed."""

    models: list[str] = Field(default_factory=list)  # public model names to probe
    interval: float = Field(default=300.0, gt=0)
    max_tokens: int = Field(default=16, ge=1)  # success is any answer, so reasoning models pass too
    max_per_day: int = Field(default=100, ge=0)  # per deployment: the cap on what probes can cost


class HealthConfig(Strict):
    """Health from real traffic over a rolling window, plus free background probes."""

    window: float = Field(
        default=60.0, gt=0
    )  # seconds of traffic the error ratio and latency cover
    min_requests: int = Field(default=5, ge=1)  # fewer in the window: the ratio is not judged
    degraded_error_ratio: float = Field(default=0.1, gt=0, le=1)
    unhealthy_error_ratio: float = Field(default=0.5, gt=0, le=1)
    probe_interval: float = Field(default=60.0, ge=0)  # GET the models list per provider; 0 = off
    probe_timeout: float = Field(default=10.0, gt=0)
    completion_probes: CompletionProbes = CompletionProbes()


_CONTEXT_KEYWORDS = [
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "too many tokens",
]


class CondensationConfig(Strict):
    """Seed 003: on a context-length error (non-streamed), summarise older messages, retry once."""

    enabled: bool = True
    model: str | None = None  # the summariser; else the model that was asked for
    max_tokens_default: int = Field(default=512, ge=1)
    adaptive_factor: float = Field(
        default=0.5, gt=0, le=1
    )  # summary max_tokens = min(chars * this, max)
    error_keywords: list[str] = Field(default_factory=lambda: list(_CONTEXT_KEYWORDS))
    cache_ttl: float = Field(default=300.0, ge=0)
    timeout: float = Field(default=10.0, gt=0)  # past it: truncate instead of summarising


class RouteLimit(Strict):
    """`limit` requests per `window` seconds from one client IP."""

    limit: int = Field(ge=1)
    window: float = Field(default=900.0, gt=0)


def _inference_paths() -> list[str]:
    return [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/api/v1/inference",
        "/api/v1/inference/stream",
        "/proxy",
        "/proxy/stream",
    ]


class IpLimitsConfig(Strict):
    """Seed 001: requests per client IP (100 per 15 min; 50 on inference routes; 5 WebSocket
    connections a minute). Loopback is exempt by default: the default bind is loopback, so the
    only client is this machine's own; behind a reverse proxy, set `trusted_proxies`."""

    enabled: bool = True
    default: RouteLimit = RouteLimit(limit=100, window=900.0)
    inference: RouteLimit = RouteLimit(limit=50, window=900.0)
    inference_paths: list[str] = Field(default_factory=_inference_paths)
    websocket: RouteLimit = RouteLimit(limit=5, window=60.0)
    routes: dict[str, RouteLimit] = Field(default_factory=dict)  # path -> its own limit
    exempt: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # Peers whose X-Forwarded-For is believed (the client is its last untrusted address).
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("exempt", "trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for net in v:
            ipaddress.ip_network(net, strict=False)
        return v


class WebSocketConfig(Strict):
    """Seed 001's WebSocket API at /ws (api/ws.py). Limits are per worker process."""

    max_connections: int = Field(default=1000, ge=1)  # WS_MAX_CONNECTIONS; past it: close 1013
    heartbeat_interval: float = Field(default=30.0, ge=0)  # seconds; 0 = no heartbeats
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)  # a bigger message: error 413
    max_streams_per_connection: int = Field(default=16, ge=1)  # in flight at once on one socket
    auth_timeout: float = Field(default=5.0, gt=0)  # seconds for the first `auth` message
    idle_timeout: float | None = Field(default=None, gt=0)  # close a socket idle this long


class SpendConfig(Strict):
    """The spend log: rows are spooled to disk at once, then written to the store in batches."""

    flush_interval: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=1000, ge=1)
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)  # past it: 503
    retention_days: int = Field(default=90, ge=0)  # spend_log rows; 0 keeps them; daily totals stay
    # Budget reservations assume this many output tokens when a request sets no max_tokens.
    reserve_max_tokens: int = Field(default=4096, ge=1)


class Settings(Strict):
    """The single settings object: file values, then env overrides, then CLI flags."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_requests: bool = False
    data_dir: str = "data"
    master_key: str | None = None
    # Seconds: default total timeout for upstream calls (providers may override).
    request_timeout: float = Field(default=600.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    first_byte_timeout: float = Field(default=300.0, gt=0)
    # Concurrency cap on inference requests; the excess waits up to queue_timeout, then 503.
    max_concurrent_requests: int = Field(default=1000, ge=0)
    max_queued_requests: int = Field(default=1000, ge=0)
    queue_timeout: float = Field(default=10.0, ge=0)
    max_request_bytes: int = Field(10 * 1024 * 1024, ge=0)
    # A client must deliver its whole body within this many seconds.
    body_read_timeout: float = Field(default=30.0, gt=0)
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
    reload_interval: float = Field(default=1.0, gt=0)
    # Retries of the same deployment on a retryable failure (connection errors, timeouts, 408,
    # 409, 429, 5xx), before failing over to the next deployment; full-jitter backoff.
    num_retries: int = Field(default=0, ge=0, le=10)
    retry_backoff: float = Field(default=0.5, ge=0)  # seconds, doubled per retry, capped at 8
    max_retry_wait: float = Field(
        default=10.0, ge=0
    )  # a longer Retry-After fails over instead of waiting
    max_attempts: int = Field(default=6, ge=1, le=50)  # across all deployments and fallbacks
    # Seconds across all attempts of one request (None: each attempt's own timeouts only).
    max_request_time: float | None = Field(default=None, gt=0)
    # Seed 003: consecutive failures that open a deployment's circuit, and how long it stays open.
    circuit_breaker_threshold: int = Field(default=5, ge=1)
    circuit_breaker_timeout: float = Field(default=60.0, gt=0)
    cooldown_time: float = Field(default=5.0, ge=0)  # after a 429 without Retry-After
    max_cooldown: float = Field(default=300.0, ge=0)  # a longer Retry-After is capped here
    # The store: keys, teams, spend. Default: a SQLite file in data_dir.
    database_url: str | None = None  # DATABASE_URL: sqlite:///path or postgresql://...
    database_schema: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Redis makes limits, budgets and revocations exact across workers and replicas.
    redis_url: str | None = None  # REDIS_URL
    redis_prefix: str = Field(default="llmp", pattern=r"^[A-Za-z0-9_.:\-]+$")
    key_refresh_interval: float = Field(default=1.0, gt=0)  # seconds between key-store polls
    ip_limits: IpLimitsConfig = IpLimitsConfig()
    websocket: WebSocketConfig = WebSocketConfig()
    spend: SpendConfig = SpendConfig()
    health: HealthConfig = HealthConfig()
    condensation: CondensationConfig = CondensationConfig()
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
        for i, m in enumerate(self.models):
            for key in ("fallbacks", "context_window_fallbacks"):
                for j, other in enumerate(getattr(m, key)):
                    if other == m.name:
                        out.append((("models", i, key, j), "a model cannot fall back to itself"))
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
