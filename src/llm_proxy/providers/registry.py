"""ProviderSpec data rows: each vendor is a wire format, a base URL, an auth scheme and its env vars."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    format: str  # key into formats.FORMATS
    default_base_url: str | None
    key_env: tuple[str, ...] = ()  # first set one wins
    base_url_env: tuple[str, ...] = ()
    auth: str = "bearer"  # bearer | x-api-key | api-key | x-goog-api-key | none
    # Local servers need no key: they switch on when their base-URL variable is set.
    key_required: bool = True
    default_headers: dict[str, str] = field(default_factory=dict)
    # URL shape, when it differs from the wire format's: "{model}" is the upstream model id.
    path: str = ""
    stream_path: str = ""
    query: str = ""  # "{api_version}" is filled from config, the env var, or api_version
    api_version: str = ""
    api_version_env: tuple[str, ...] = ()
    # Extra headers taken from the environment: header -> env vars (first set wins).
    header_env: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The free health probe: GET this (after the base URL, with `query`). None: not probed.
    models_path: str | None = "/models"


def _compat(
    name: str,
    url: str | None,
    *,
    key: bool = True,
    extra_key: str = "",
    header_env: dict[str, tuple[str, ...]] | None = None,
) -> ProviderSpec:
    upper = name.upper()
    keys = (f"{upper}_API_KEY", f"PROXY_API_{upper}_API_KEY", *([extra_key] if extra_key else []))
    return ProviderSpec(
        name=name,
        format="openai",
        default_base_url=url,
        key_env=keys,
        base_url_env=(f"{upper}_BASE_URL", f"{upper}_API_BASE"),
        key_required=key,
        header_env=header_env or {},
    )


# The OpenAI-compatible family: differences are data, not branches.
SPECS: dict[str, ProviderSpec] = {
    s.name: s
    for s in (
        _compat("openai", "https://api.openai.com/v1"),
        # OpenRouter ranks apps by these optional headers; its `provider` routing preferences
        # in the body pass through untouched.
        _compat(
            "openrouter",
            "https://openrouter.ai/api/v1",
            header_env={
                "HTTP-Referer": ("OPENROUTER_SITE_URL", "OR_SITE_URL"),
                "X-Title": ("OPENROUTER_APP_NAME", "OR_APP_NAME"),
            },
        ),
        _compat("xai", "https://api.x.ai/v1", extra_key="GROK_API_KEY"),
        _compat("groq", "https://api.groq.com/openai/v1"),
        _compat("together", "https://api.together.xyz/v1"),
        _compat("deepseek", "https://api.deepseek.com/v1"),
        _compat("mistral", "https://api.mistral.ai/v1"),
        _compat("fireworks", "https://api.fireworks.ai/inference/v1"),
        _compat("perplexity", "https://api.perplexity.ai"),
        _compat("blackbox", "https://api.blackbox.ai/v1"),
        _compat("ollama", None, key=False),
        _compat("vllm", None, key=False),
        _compat("llamacpp", None, key=False),
        _compat("lmstudio", None, key=False),
        _compat("localai", None, key=False),
        # Seed 004's generic OpenAI-compatible server.
        ProviderSpec(
            name="openai_compat",
            format="openai",
            default_base_url=None,
            key_env=("OPENAI_COMPAT_API_KEY",),
            base_url_env=("OPENAI_COMPAT_BASE_URL",),
            key_required=False,
        ),
        ProviderSpec(
            name="mock", format="openai", default_base_url=None, auth="none", models_path=None
        ),
        # Azure OpenAI: the deployment is in the path, api-version in the query (data, not code).
        ProviderSpec(
            name="azure",
            format="openai",
            default_base_url=None,
            key_env=("AZURE_API_KEY", "AZURE_OPENAI_API_KEY"),
            base_url_env=("AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT"),
            auth="api-key",
            path="/openai/deployments/{model}/chat/completions",
            models_path="/openai/models",
            query="api-version={api_version}",
            api_version="2024-10-21",
            api_version_env=("AZURE_API_VERSION", "OPENAI_API_VERSION"),
        ),
        # Azure AI Foundry's model-inference endpoint: OpenAI format, model in the body.
        ProviderSpec(
            name="azure_foundry",
            format="openai",
            default_base_url=None,
            key_env=("AZURE_AI_API_KEY",),
            base_url_env=("AZURE_AI_API_BASE",),
            auth="api-key",
            models_path="/info",
            query="api-version={api_version}",
            api_version="2024-05-01-preview",
            api_version_env=("AZURE_AI_API_VERSION",),
        ),
        # Native wire formats.
        # Bedrock: Converse API, SigV4-signed with the usual AWS variables (providers/aws_sigv4.py).
        ProviderSpec(
            name="bedrock",
            format="bedrock",
            default_base_url=None,  # https://bedrock-runtime.<region>.amazonaws.com
            key_env=("AWS_ACCESS_KEY_ID",),
            base_url_env=("BEDROCK_BASE_URL",),
            auth="aws-sigv4",
            models_path=None,  # the model list is on the control plane, not bedrock-runtime
        ),
        # Vertex AI: Gemini's wire format under a project/region URL, with OAuth2 tokens from a
        # service account (providers/google_auth.py) instead of an API key.
        ProviderSpec(
            name="vertex",
            format="gemini",
            default_base_url=None,
            key_env=("GOOGLE_APPLICATION_CREDENTIALS",),
            base_url_env=("VERTEX_BASE_URL",),
            auth="google-oauth",
            models_path=None,
        ),
        ProviderSpec(
            name="gemini",
            format="gemini",
            default_base_url="https://generativelanguage.googleapis.com/v1beta",
            key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY", "PROXY_API_GEMINI_API_KEY"),
            base_url_env=("GEMINI_BASE_URL", "GEMINI_API_BASE"),
            auth="x-goog-api-key",  # a header, so the key never sits in a URL or a log line
        ),
        ProviderSpec(
            name="cohere",
            format="cohere",
            default_base_url="https://api.cohere.com",
            key_env=("COHERE_API_KEY", "CO_API_KEY", "PROXY_API_COHERE_API_KEY"),
            base_url_env=("COHERE_BASE_URL", "COHERE_API_BASE"),
            models_path="/v1/models",
        ),
        ProviderSpec(
            name="anthropic",
            format="anthropic",
            default_base_url="https://api.anthropic.com/v1",
            key_env=("ANTHROPIC_API_KEY", "PROXY_API_ANTHROPIC_API_KEY"),
            base_url_env=("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"),
            auth="x-api-key",
            default_headers={"anthropic-version": "2023-06-01"},
        ),
    )
}

# Built-in model-name rules, tried after the config's and MODEL_PROVIDER_MAP's.
BUILTIN_RULES: tuple[tuple[str, str], ...] = (
    ("gpt-*", "openai"),
    ("o1*", "openai"),
    ("o3*", "openai"),
    ("o4*", "openai"),
    ("chatgpt-*", "openai"),
    ("codex-*", "openai"),
    ("text-embedding-*", "openai"),
    ("claude-*", "anthropic"),
    ("gemini-*", "gemini"),
    ("grok-*", "xai"),
    ("command-*", "cohere"),
    ("deepseek-*", "deepseek"),
    ("mistral-*", "mistral"),
    ("codestral-*", "mistral"),
    ("magistral-*", "mistral"),
    ("sonar*", "perplexity"),
    # Bedrock model ids: vendor.model, or a cross-region inference profile (us./eu./apac.).
    *(
        (f"{vendor}.*", "bedrock")
        for vendor in (
            "anthropic",
            "amazon",
            "meta",
            "mistral",
            "cohere",
            "ai21",
            "us",
            "eu",
            "apac",
            "deepseek",
        )
    ),
)

__all__ = ["BUILTIN_RULES", "SPECS", "ProviderSpec"]
