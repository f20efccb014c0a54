"""Resolve a requested model to a Route: exact name, provider/model, prefix rules, X-Provider."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from llm_proxy.errors import ModelNotFoundError
from llm_proxy.routing.balance import Candidate
from llm_proxy.routing.state import Decision, StatsBook
from llm_proxy.runtime import DEFAULT_POLICY, Deployment, ModelPolicy, Runtime

_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Route:
    """A public model as one request sees it: its candidates (priority order) and policy."""

    model: str
    candidates: tuple[Candidate, ...]
    policy: ModelPolicy
    decision: Decision  # the last routing decision for this model (mutable, shared)


class Router:
    """Resolves against one Runtime; a reload makes a new Router, so the cache never goes stale.

    Deployment stats live in the StatsBook, which outlives routers: a reload keeps them."""

    __slots__ = ("_cache", "_configured", "book", "runtime")

    def __init__(self, runtime: Runtime, book: StatsBook | None = None) -> None:
        self.runtime = runtime
        self._configured = {id(d) for ds in runtime.models.values() for d in ds}
        self.book = book if book is not None else StatsBook()
        self.book.policy.update(runtime.settings)
        self._cache: dict[tuple[str, str | None], Route] = {}

    def route(self, model: str, forced_provider: str | None = None) -> Route:
        """The model's Route; raises ModelNotFoundError (404 model_not_found)."""
        key = (model, forced_provider)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = self._resolve(model, forced_provider)
        book = self.book
        ordered = sorted(found, key=lambda d: d.priority)  # stable: ties keep config order
        route = Route(
            model=model,
            candidates=tuple(
                Candidate(d, book.get(d.key, d.provider.pool, id(d) in self._configured))
                for d in ordered
            ),
            policy=self.runtime.policies.get(self.public_of(model) or model, DEFAULT_POLICY),
            decision=book.decision(model),
        )
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = route
        return route

    def public_of(self, model: str) -> str | None:
        """The configured public model a `provider/<public model>` name stands for (the
        catalog's ids), when that provider serves it; else None."""
        prefix, sep, rest = model.partition("/")
        if not sep or model in self.runtime.models or prefix not in self.runtime.providers:
            return None
        deps = self.runtime.models.get(rest, ())
        return rest if any(d.provider.name == prefix for d in deps) else None

    def resolve(self, model: str, forced_provider: str | None = None) -> tuple[Deployment, ...]:
        """The model's deployments in priority order; raises ModelNotFoundError."""
        return tuple(c.deployment for c in self.route(model, forced_provider).candidates)

    def _provider(self, name: str, model: str) -> tuple[Deployment, ...]:
        rt = self.runtime
        p = rt.providers.get(name)
        if p is None:
            hint = rt.missing_hints.get(name)
            extra = f" ({hint})" if hint else ""
            raise ModelNotFoundError(
                f"The model '{model}' maps to provider '{name}', which is not configured{extra}.",
                param="model",
            )
        return (Deployment(provider=p, model=model, params={}),)

    def _resolve(self, model: str, forced: str | None) -> tuple[Deployment, ...]:
        rt = self.runtime
        if forced:
            if forced not in rt.providers:
                raise ModelNotFoundError(
                    f"The provider '{forced}' named by X-Provider is not configured.",
                    param="X-Provider",
                    code="provider_not_found",
                )
            own = [d for d in rt.models.get(model, ()) if d.provider.name == forced]
            if own:
                return tuple(own)
            prefix, sep, rest = model.partition("/")
            return self._provider(forced, rest if sep and prefix == forced else model)
        exact = rt.models.get(model)
        if exact:
            return exact
        prefix, sep, rest = model.partition("/")
        if sep and rest and prefix in rt.providers:
            # `provider/<public model>` (the catalog's ids): that model's deployments there.
            own = [d for d in rt.models.get(rest, ()) if d.provider.name == prefix]
            return tuple(own) if own else self._provider(prefix, rest)
        for pattern, provider in rt.rules:
            if fnmatchcase(model, pattern):
                return self._provider(provider, model)
        default = rt.settings.default_provider
        if default:
            return self._provider(default, model)
        raise ModelNotFoundError(
            f"The model '{model}' does not exist or you do not have access to it.",
            param="model",
        )
