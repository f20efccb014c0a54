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
    auth: str = "bearer"  # bearer | x-api-key | none
    # Local servers need no key: they switch on when their base-URL variable is set.
    key_required: bool = True
    default_headers: dict[str, str] = field(default_factory=dict)


def _compat(name: str, url: str | None, *, key: bool = True, extra_key: str = "") -> ProviderSpec:
    upper = name.upper()
    keys = (f"{upper}_API_KEY", f"PROXY_API_{upper}_API_KEY", *([extra_key] if extra_key else []))
    return ProviderSpec(
        name=name,
        format="openai",
        default_base_url=url,
        key_env=keys,
        base_url_env=(f"{upper}_BASE_URL", f"{upper}_API_BASE"),
        key_required=key,
    )


# The OpenAI-compatible family: differences are data, not branches.
SPECS: dict[str, ProviderSpec] = {
    s.name: s
    for s in (
        _compat("openai", "https://api.openai.com/v1"),
        _compat("openrouter", "https://openrouter.ai/api/v1"),
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
        ProviderSpec(name="mock", format="openai", default_base_url=None, auth="none"),
        # Native wire formats.
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
)

__all__ = ["BUILTIN_RULES", "SPECS", "ProviderSpec"]
