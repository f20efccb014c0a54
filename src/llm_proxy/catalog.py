"""Seed 001's model catalog: the configured models joined with context windows, prices and
supported parameters. Pure: a Runtime in, frozen entries out (api/catalog.py serves them).

- id: "<provider>/<model>" (the first deployment's provider, the public model name); a public
  name that already has a slash is the id as is. The id's part before its first slash is the
  entry's provider (for filters and /providers).
- pricing: USD per 1K tokens as decimal strings (seed 001: gpt-4o "0.005"), from the first
  deployment's configured `price` (USD per 1M), else genai-prices; null when neither knows,
  "0" for the built-in mock provider.
- context_length / max_completion_tokens: `info` in config, else a built-in table of documented
  defaults for well-known families (matched on the upstream model id, then the public name),
  else null. genai-prices carries no context windows.
- supported_parameters: `info`, else what the first deployment's wire format translates.
- is_moderated: `info`, else false (the gateway itself runs no moderation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llm_proxy.config.schema import ModelInfo
from llm_proxy.runtime import Deployment, Runtime

# (family pattern, context_length, max_completion_tokens): vendors' documented values; the
# first match wins, so more specific patterns come first. `info` in config overrides them.
_FAMILIES: tuple[tuple[str, int, int | None], ...] = (
    (r"gpt-5", 400_000, 128_000),
    (r"gpt-4\.1", 1_047_576, 32_768),
    (r"gpt-4o", 128_000, 16_384),
    (r"gpt-4\.5", 128_000, 16_384),
    (r"gpt-4-turbo", 128_000, 4_096),
    (r"gpt-4", 8_192, 8_192),
    (r"gpt-3\.5-turbo", 16_385, 4_096),
    (r"o1-mini", 128_000, 65_536),
    (r"o1-preview", 128_000, 32_768),
    (r"o(?:1|3|4)(?:-mini|-pro)?", 200_000, 100_000),
    (r"claude-(?:opus-4|4-opus)", 200_000, 32_000),
    (r"claude-(?:sonnet-4|4-sonnet|haiku-4|3[-.]7)", 200_000, 64_000),
    (r"claude-3[-.]5", 200_000, 8_192),
    (r"claude-3", 200_000, 4_096),
    (r"gemini-2\.5", 1_048_576, 65_536),
    (r"gemini-2\.0", 1_048_576, 8_192),
    (r"gemini-1\.5-pro", 2_097_152, 8_192),
    (r"gemini-1\.5", 1_048_576, 8_192),
    (r"command-a", 256_000, 8_000),
    (r"command-r", 128_000, 4_000),
    (r"grok-4", 256_000, None),
    (r"grok-(?:2|3)", 131_072, None),
    (r"codestral", 256_000, None),
    (r"(?:mistral|magistral)-(?:large|medium)", 128_000, None),
    (r"mistral-small", 128_000, None),
    (r"(?:open-)?mistral-nemo", 128_000, None),
    (r"deepseek-reasoner", 128_000, 64_000),
    (r"deepseek-chat", 128_000, 8_192),
    (r"(?:meta-)?llama-?3[.-][123]", 131_072, None),
    (r"(?:meta-)?llama-?3", 8_192, None),
)
# A family starts the id or follows a vendor prefix ("openai/", "us.anthropic.", "models/").
_FAMILY_RES = tuple(
    (re.compile(rf"(?:^|[/.:]){pattern}(?![a-z0-9])"), ctx, out) for pattern, ctx, out in _FAMILIES
)

_OPENAI_PARAMS = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "frequency_penalty",
    "presence_penalty", "stop", "stream", "n", "seed", "logit_bias", "logprobs", "top_logprobs",
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort", "user",
)  # fmt: skip
# What each wire format's translator carries upstream (formats/*.py).
PARAMETERS: dict[str, tuple[str, ...]] = {
    "openai": _OPENAI_PARAMS,
    "anthropic": (
        "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "stop", "stream",
        "tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort",
        "user",
    ),
    "gemini": (
        "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens",
        "frequency_penalty", "presence_penalty", "stop", "stream", "n", "seed", "tools",
        "tool_choice", "response_format", "reasoning_effort",
    ),
    "cohere": (
        "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens",
        "frequency_penalty", "presence_penalty", "stop", "stream", "seed", "logprobs", "tools",
        "tool_choice", "response_format",
    ),
    "bedrock": (
        "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "stream", "tools",
        "tool_choice", "response_format",
    ),
}  # fmt: skip

_UPPER = {"gpt": "GPT", "glm": "GLM", "ai": "AI", "r1": "R1", "v3": "V3"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One catalog row: the seed-001 document plus what filters and access checks need."""

    id: str
    model: str  # the public model name: what keys are checked against and calls name
    provider: str  # the id's provider part
    doc: dict[str, Any]  # the seed-001 model object, in the seed's key order
    haystack: str = field(repr=False)  # id, name and description, lower-cased, for search


@dataclass(frozen=True, slots=True)
class Catalog:
    entries: tuple[Entry, ...]
    by_id: dict[str, Entry]
    by_model: dict[str, Entry]  # the public name is accepted as an alias of the id

    def find(self, ident: str) -> Entry | None:
        return self.by_id.get(ident) or self.by_model.get(ident)


def known_limits(*names: str) -> tuple[int | None, int | None]:
    """(context_length, max_completion_tokens) of the first name in a known family."""
    for name in names:
        low = name.lower()
        for rx, ctx, out in _FAMILY_RES:
            if rx.search(low):
                return ctx, out
    return None, None


def per_thousand(per_million: float) -> str:
    """USD per 1M tokens -> the seed's USD per 1K as a plain decimal string ("0.005")."""
    d = Decimal(f"{per_million:.12g}") / 1000
    return format(d.normalize(), "f")


def pricing(d: Deployment) -> dict[str, str | None]:
    """The deployment's price in the seed's unit; null when unknown."""
    if d.provider.type == "mock":
        return {"prompt": "0", "completion": "0"}
    per_m = d.price
    if per_m is None:
        from llm_proxy.spend.cost import catalog_pricing

        got = catalog_pricing(d.provider.type, d.provider.name, d.model)
        per_m = (got.input * 1_000_000, got.output * 1_000_000) if got is not None else None
    if per_m is None:
        return {"prompt": None, "completion": None}
    return {"prompt": per_thousand(per_m[0]), "completion": per_thousand(per_m[1])}


def display_name(model: str) -> str:
    """A display name: claude-3-5-sonnet-20241022 -> Claude 3.5 Sonnet 20241022, gpt-4o -> GPT-4o."""
    words: list[str] = []
    for token in re.split(r"[-_ ]+", model.rsplit("/", 1)[-1]):
        if not token:
            continue
        if token.isdigit() and len(token) == 1 and words and re.fullmatch(r"\d(\.\d)*", words[-1]):
            words[-1] += "." + token  # "3-5" is a version: 3.5
        elif token.lower() in _UPPER:
            words.append(_UPPER[token.lower()])
        else:
            words.append(token.capitalize() if token.isalpha() else token)
    text = " ".join(words)
    return re.sub(r"^GPT ", "GPT-", text) or model


def _entry(ident: str, model: str, deps: tuple[Deployment, ...], info: ModelInfo) -> Entry:
    first = deps[0]
    name = info.name or display_name(model)
    description = info.description or f"{name} via {first.provider.name}"
    ctx, out = known_limits(first.model, model)
    params = info.supported_parameters
    if params is None:
        params = list(PARAMETERS.get(first.provider.format, _OPENAI_PARAMS))
    doc = {
        "id": ident,
        "name": name,
        "description": description,
        "context_length": info.context_length or ctx,
        "pricing": pricing(first),
        "supported_parameters": list(params),
        "is_moderated": bool(info.is_moderated),
        "max_completion_tokens": info.max_completion_tokens or out,
    }
    haystack = "\n".join((ident, name, description)).lower()
    provider = ident.partition("/")[0] if "/" in ident else first.provider.name
    return Entry(ident, model, provider, doc, haystack)


_NO_INFO = ModelInfo()


def build(runtime: Runtime) -> Catalog:
    """The catalog of every routable configured model, in config order."""
    infos = {m.name: m.info for m in runtime.settings.models if m.info is not None}
    # Public names with a slash are ids as given; a derived id never takes one of theirs.
    taken = {name for name in runtime.models if "/" in name}
    entries: list[Entry] = []
    for model, deps in runtime.models.items():
        ident = model
        if "/" not in model:
            ident = f"{deps[0].provider.name}/{model}"
            if ident in taken:
                ident = model  # a configured "openai/x" owns that id; this one keeps its name
            taken.add(ident)
        entries.append(_entry(ident, model, deps, infos.get(model) or _NO_INFO))
    return Catalog(
        entries=tuple(entries),
        by_id={e.id: e for e in entries},
        by_model={e.model: e for e in entries},
    )


class CatalogCache:
    """The catalog of the current routing table, rebuilt only when the table object changes."""

    __slots__ = ("_catalog", "_runtime")

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._catalog: Catalog | None = None

    def get(self, runtime: Runtime) -> Catalog:
        if runtime is not self._runtime or self._catalog is None:
            self._catalog = build(runtime)
            self._runtime = runtime
        return self._catalog


__all__ = ["Catalog", "CatalogCache", "Entry", "build", "display_name", "known_limits"]
