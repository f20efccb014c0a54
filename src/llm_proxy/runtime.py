"""The compiled, frozen routing table built from Settings; a reload swaps the whole object."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from llm_proxy.config.load import ConfigError
from llm_proxy.config.schema import (
    DeploymentConfig,
    HedgeConfig,
    ModelConfig,
    Price,
    ProviderConfig,
    Settings,
    Timeouts,
)
from llm_proxy.formats import FORMATS, WireFormat
from llm_proxy.providers.registry import BUILTIN_RULES, SPECS, ProviderSpec


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    type: str
    format: str
    base_url: str
    chat_url: str  # URL templates: "{model}" is replaced by the upstream model id
    timeouts: Timeouts
    max_connections: int
    forward_client_key: bool
    # Static headers sent on every call: auth first, then extras. Never logged.
    headers: dict[str, str] = field(repr=False)
    key_hint: str = ""  # which setting the key came from, for error messages
    wire: WireFormat = FORMATS["openai"]
    stream_url: str = ""  # defaults to chat_url
    # Credentials that expire (Vertex AI's OAuth2 tokens): `await authorization()` per call.
    token_source: Any = field(default=None, repr=False)
    # Per-request signing (AWS SigV4): sign(method, url, headers, body) -> headers.
    signer: Any = field(default=None, repr=False)
    # Where the credential goes: forwarded client keys use the same header and scheme.
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer "
    pool: str = ""  # connection-pool key: a new base URL gets a fresh pool
    # Credential values sent upstream, masked in any upstream text we pass on.
    secrets: tuple[bytes, ...] = field(default=(), repr=False)
    models_url: str = ""  # the free health probe (GET); "" when the provider has none

    def __post_init__(self) -> None:
        if not self.pool:
            object.__setattr__(self, "pool", f"{self.name}|{self.base_url}")
        if not self.stream_url:
            object.__setattr__(self, "stream_url", self.chat_url)
        if not self.secrets:
            found = []
            for name, value in self.headers.items():
                low = name.lower()
                if low in ("authorization", "x-api-key", "api-key") or "key" in low:
                    found.append(value.encode("latin-1", "replace"))
                    _, _, token = value.partition(" ")
                    if token:
                        found.append(token.encode("latin-1", "replace"))
            object.__setattr__(self, "secrets", tuple(s for s in found if len(s) >= 8))

    def fingerprint(self) -> str:
        """A digest of everything that changes behaviour (for reload diffs; hides secrets)."""
        raw = repr(
            (
                self.type,
                self.base_url,
                self.timeouts,
                self.forward_client_key,
                sorted(self.headers.items()),
                self.max_connections,
            )
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: Provider
    model: str  # upstream model id
    params: dict[str, Any]
    url: str = ""  # the upstream URL for plain and for streamed calls (model filled in)
    stream_url: str = ""
    weight: float = 1.0
    priority: int = 0
    rpm: int | None = None
    tpm: int | None = None
    tags: frozenset[str] = frozenset()
    num_retries: int | None = None  # None: the global setting
    timeouts: Timeouts | None = None  # None: the provider's (filled in below)
    price: tuple[float, float] | None = None  # USD per million (input, output) tokens
    price_config: Price | None = None  # the config's full price (cached input, reasoning)
    max_concurrent: int | None = None  # calls in flight at once (per worker)
    label: str = ""  # provider/model: what headers, logs and /admin/routes call it
    key: str = ""  # identity of its stats: the upstream pool and model, stable across reloads

    def __post_init__(self) -> None:
        quoted = quote(self.model, safe="-._~:")
        object.__setattr__(self, "url", self.provider.chat_url.replace("{model}", quoted))
        object.__setattr__(self, "stream_url", self.provider.stream_url.replace("{model}", quoted))
        if self.timeouts is None:
            object.__setattr__(self, "timeouts", self.provider.timeouts)
        object.__setattr__(self, "label", f"{self.provider.name}/{self.model}")
        object.__setattr__(self, "key", f"{self.provider.pool}|{self.model}")


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """How a public model routes: strategy, fallbacks, hedging."""

    strategy: str = "priority"
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()
    hedge: HedgeConfig | None = None


DEFAULT_POLICY = ModelPolicy()


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    providers: dict[str, Provider]
    models: dict[str, tuple[Deployment, ...]]
    rules: tuple[tuple[str, str], ...]  # (glob, provider name), first match wins
    master_key_sha256: bytes = field(repr=False)
    # Providers a rule may name but which are off, with the variable that would switch them on.
    missing_hints: dict[str, str] = field(default_factory=dict)
    policies: dict[str, ModelPolicy] = field(default_factory=dict)  # model -> how it routes


def hash_key(key: str) -> bytes:
    """The at-rest and compare form of an API key."""
    return hashlib.sha256(key.encode()).digest()


def _timeouts(settings: Settings, own: Timeouts | None) -> Timeouts:
    if own is not None:
        return own
    return Timeouts(
        connect=settings.connect_timeout,
        first_byte=min(settings.first_byte_timeout, settings.request_timeout),
        total=settings.request_timeout,
    )


def _clean_key(key: str | None, where: str) -> str | None:
    """Keys from env files often carry a trailing CR or spaces; anything else odd is an error."""
    if key is None:
        return None
    key = key.strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise ConfigError([f"{where}: the API key contains control characters"])
    return key or None


_AUTH: dict[str, tuple[str, str]] = {  # scheme -> (header, value prefix)
    "bearer": ("Authorization", "Bearer "),
    "x-api-key": ("x-api-key", ""),
    "api-key": ("api-key", ""),
    "x-goog-api-key": ("x-goog-api-key", ""),
}


def _with_query(url: str, query: str) -> str:
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _auth_headers(scheme: str, key: str | None) -> dict[str, str]:
    base = {"Content-Type": "application/json"}
    if key and scheme in _AUTH:
        header, prefix = _AUTH[scheme]
        base[header] = prefix + key
    return base


def _provider(
    spec: ProviderSpec,
    name: str,
    ptype: str,
    base: str,
    key: str | None,
    settings: Settings,
    **kw: Any,
) -> Provider:
    wire = FORMATS[spec.format]
    header, prefix = _AUTH.get(spec.auth, ("Authorization", "Bearer "))
    extra: dict[str, str] = kw.pop("headers", {})
    query = spec.query.format(api_version=kw.pop("api_version", None) or spec.api_version)
    path, stream_path = spec.path or wire.path, spec.stream_path or spec.path or wire.stream_path
    return Provider(
        name=name,
        type=ptype,
        format=spec.format,
        base_url=base,
        chat_url=_with_query(f"{base}{path}", query),
        stream_url=_with_query(f"{base}{stream_path}", query),
        timeouts=kw.pop("timeouts", None) or _timeouts(settings, None),
        max_connections=kw.pop("max_connections", 1000),
        forward_client_key=kw.pop("forward_client_key", False),
        headers={**_auth_headers(spec.auth, key), **spec.default_headers, **extra},
        key_hint=kw.pop("key_hint", ""),
        wire=wire,
        auth_header=header,
        auth_scheme=prefix,
        models_url=_with_query(f"{base}{spec.models_path}", query) if spec.models_path else "",
    )


_NATIVE_TYPES = frozenset(
    {"anthropic", "azure", "azure_foundry", "gemini", "vertex", "bedrock", "cohere"}
)


def _vertex(
    name: str,
    settings: Settings,
    creds: str,
    project: str,
    location: str,
    root: str | None,
    **kw: Any,
) -> Provider:
    from llm_proxy.providers.google_auth import ServiceAccountTokenSource, load_service_account

    source = ServiceAccountTokenSource(load_service_account(creds))
    api = (root or f"https://{location}-aiplatform.googleapis.com").rstrip("/")
    base = f"{api}/v1/projects/{project}/locations/{location}/publishers/google"
    p = _provider(SPECS["vertex"], name, "vertex", base, None, settings, **kw)
    object.__setattr__(p, "token_source", source)
    return p


# A config entry's type picks its defaults when its name is not a built-in provider's.
_TYPE_SPECS = {"openai": ProviderSpec(name="openai", format="openai", default_base_url=None)}


def _bedrock(
    name: str,
    settings: Settings,
    env: dict[str, str],
    region: str | None,
    root: str | None,
    **kw: Any,
) -> Provider | None:
    from llm_proxy.providers.aws_sigv4 import from_env

    signer = from_env(env, region)
    if signer is None:
        return None
    api = (root or f"https://bedrock-runtime.{signer.region}.amazonaws.com").rstrip("/")
    p = _provider(SPECS["bedrock"], name, "bedrock", api, None, settings, **kw)
    object.__setattr__(p, "signer", signer)
    return p


def _from_config(pc: ProviderConfig, settings: Settings, env: dict[str, str]) -> Provider:
    if pc.type == "bedrock":
        found = _bedrock(
            pc.name,
            settings,
            env,
            pc.region,
            pc.base_url,
            headers=pc.headers,
            timeouts=_timeouts(settings, pc.timeouts),
            max_connections=pc.max_connections,
            key_hint="AWS_ACCESS_KEY_ID",
        )
        if found is None:
            raise ConfigError(
                [f"providers.{pc.name}: bedrock needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"]
            )
        return found
    if pc.type == "vertex":
        creds = pc.credentials_file or env.get("GOOGLE_APPLICATION_CREDENTIALS", "")
        return _vertex(
            pc.name,
            settings,
            creds,
            pc.project or "",
            pc.location or "us-central1",
            pc.base_url,
            headers=pc.headers,
            timeouts=_timeouts(settings, pc.timeouts),
            max_connections=pc.max_connections,
            key_hint="credentials_file",
        )
    named = SPECS.get(pc.name)
    if named is not None and (named.format == pc.type or named.name == pc.type):
        spec = named
    else:
        spec = _TYPE_SPECS.get(pc.type) or SPECS[pc.type]
    key = pc.api_key
    hint = "api_key" if key else ""
    if not key and pc.api_key_env:
        key = env.get(pc.api_key_env) or None
        hint = pc.api_key_env
    key = _clean_key(key, f"providers.{pc.name}.{hint or 'api_key'}")
    base = "mock://local" if pc.type == "mock" else pc.base_url or spec.default_base_url or ""
    return _provider(
        spec,
        pc.name,
        pc.type,
        base,
        key,
        settings,
        headers=pc.headers,
        timeouts=_timeouts(settings, pc.timeouts),
        max_connections=pc.max_connections,
        forward_client_key=pc.forward_client_key,
        key_hint=hint,
    )


def _from_env(spec: ProviderSpec, settings: Settings, env: dict[str, str]) -> Provider | None:
    if spec.name == "bedrock":
        return _bedrock("bedrock", settings, env, None, env.get("BEDROCK_BASE_URL"))
    if spec.name == "vertex":
        creds, project = env.get("GOOGLE_APPLICATION_CREDENTIALS"), env.get("VERTEX_PROJECT")
        if not (creds and project):
            return None
        location = env.get("VERTEX_LOCATION") or "us-central1"
        return _vertex("vertex", settings, creds, project, location, env.get("VERTEX_BASE_URL"))
    key_var = next((v for v in spec.key_env if env.get(v)), None)
    url_var = next((v for v in spec.base_url_env if env.get(v)), None)
    if spec.key_required and key_var is None:
        return None
    if url_var is None and (not spec.key_required or not spec.default_base_url):
        return None  # local servers, and Azure, need their URL
    base = (env[url_var] if url_var else spec.default_base_url or "").rstrip("/")
    key = _clean_key(env[key_var], f"env {key_var}") if key_var else None
    ptype = spec.name if spec.name in _NATIVE_TYPES else "openai"
    version = next((env[v] for v in spec.api_version_env if env.get(v)), None)
    headers = {
        h: value
        for h, names in spec.header_env.items()
        if (value := next((env[n] for n in names if env.get(n)), ""))
    }
    return _provider(
        spec,
        spec.name,
        ptype,
        base,
        key,
        settings,
        key_hint=key_var or "",
        api_version=version,
        headers=headers,
    )


def _mock(settings: Settings) -> Provider:
    return _provider(
        SPECS["mock"], "mock", "mock", "mock://local", None, settings, max_connections=1
    )


def compile_runtime(settings: Settings, env: dict[str, str], master_sha256: bytes) -> Runtime:
    """Settings + environment -> the frozen table the request path reads."""
    providers: dict[str, Provider] = {"mock": _mock(settings)}
    hints: dict[str, str] = {}
    for spec in SPECS.values():
        if spec.name == "mock":
            continue
        p = _from_env(spec, settings, env)
        if p is not None:
            providers[p.name] = p
        else:
            var = spec.key_env[0] if spec.key_required else spec.base_url_env[0]
            hints[spec.name] = f"set {var} to enable it"
    for pc in settings.providers:
        if pc.enabled:
            providers[pc.name] = _from_config(pc, settings, env)
            hints.pop(pc.name, None)
    hints["vertex"] = "set GOOGLE_APPLICATION_CREDENTIALS and VERTEX_PROJECT to enable it"
    models = {
        m.name: tuple(
            _deployment(providers[d.provider], d, m)
            for d in m.deployments
            if d.provider in providers
        )
        for m in settings.models
    }
    rules = (*settings.model_provider_map.items(), *BUILTIN_RULES)
    return Runtime(
        settings=settings,
        providers=providers,
        models={k: v for k, v in models.items() if v},
        rules=tuple(rules),
        master_key_sha256=master_sha256,
        policies={
            m.name: ModelPolicy(
                strategy=m.strategy,
                fallbacks=tuple(m.fallbacks),
                context_window_fallbacks=tuple(m.context_window_fallbacks),
                hedge=m.hedge if m.hedge is not None and m.hedge.enabled else None,
            )
            for m in settings.models
        },
        missing_hints=hints,
    )


def _deployment(p: Provider, d: DeploymentConfig, m: ModelConfig) -> Deployment:
    price = (d.price.input, d.price.output) if d.price else None
    if price is None and m.strategy == "lowest-cost":
        price = lookup_price(p.type, p.name, d.model)
    return Deployment(
        provider=p,
        model=d.model,
        params=dict(d.params),
        weight=d.weight,
        priority=d.priority,
        rpm=d.rpm,
        tpm=d.tpm,
        tags=frozenset(d.tags),
        num_retries=d.num_retries,
        timeouts=d.timeouts,
        price=price,
        price_config=d.price,
        max_concurrent=d.max_concurrent,
    )


def lookup_price(ptype: str, name: str, model: str) -> tuple[float, float] | None:
    """USD per million (input, output) tokens from genai-prices' bundled snapshot, if it knows."""
    from llm_proxy.spend.cost import catalog_pricing

    got = catalog_pricing(ptype, name, model)
    return (got.input * 1_000_000, got.output * 1_000_000) if got is not None else None


def diff(old: Runtime, new: Runtime) -> dict[str, list[str]]:
    """Models and providers added, removed and changed between two runtimes."""

    def prov(r: Runtime) -> dict[str, str]:
        return {n: p.fingerprint() for n, p in r.providers.items()}

    def mods(r: Runtime) -> dict[str, str]:
        return {
            n: repr(
                (
                    [
                        (d.provider.name, d.model, sorted(d.params.items()), d.weight, d.priority)
                        for d in ds
                    ],
                    r.policies.get(n),
                )
            )
            for n, ds in r.models.items()
        }

    out: dict[str, list[str]] = {}
    for kind, a, b in (("providers", prov(old), prov(new)), ("models", mods(old), mods(new))):
        out[f"{kind}_added"] = sorted(set(b) - set(a))
        out[f"{kind}_removed"] = sorted(set(a) - set(b))
        out[f"{kind}_changed"] = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    return out
