"""`llm-proxy keys ...`, `teams ...`, `spend`, `db upgrade`: the store from the command line.

They talk to the store directly (no running gateway needed); running gateways see a change at
their next poll (key_refresh_interval), or at once when Redis carries the notice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")

keys_cli = typer.Typer(
    no_args_is_help=True, help="Virtual keys: create, list, update, revoke, rotate."
)
teams_cli = typer.Typer(no_args_is_help=True, help="Teams: budgets and limits over their keys.")
db_cli = typer.Typer(no_args_is_help=True, help="The store: migrations.")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: none, or $LLM_PROXY_CONFIG)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _settings(config: Path | None) -> Any:
    from llm_proxy.config.load import ConfigError, load_config, process_env

    env = process_env()
    path = str(config) if config is not None else env.get("LLM_PROXY_CONFIG") or None
    try:
        return load_config(path, env).settings
    except ConfigError as e:
        for p in e.problems:
            typer.echo(f"config error: {p}", err=True)
        raise typer.Exit(1) from None


def _run(
    config: Path | None, job: Callable[[Any, Any], Awaitable[T]], notify: str | None = None
) -> T:
    """Migrate, run `job(engine, settings)`, announce the change on Redis if configured."""
    from llm_proxy.store.db import make_engine, redacted, upgrade

    s = _settings(config)

    async def go() -> T:
        engine = make_engine(s)
        try:
            await upgrade(engine, s.database_schema)
            out = await job(engine, s)
            if notify is not None and s.redis_url:
                await _announce(s, out, notify)
            return out
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except (LookupError, ValueError) as e:
        typer.echo(f"error: {str(e).strip(chr(39))}", err=True)
        raise typer.Exit(1) from None
    except OSError as e:
        typer.echo(
            f"error: the store ({redacted(str(s.database_url or 'sqlite'))}) is unreachable: {e}",
            err=True,
        )
        raise typer.Exit(1) from None


async def _announce(s: Any, out: Any, what: str) -> None:
    from redis.asyncio import Redis

    from llm_proxy.keys.book import KeyBus

    h = out[0] if isinstance(out, tuple) else out
    if h is None:
        return
    old = out[2] if isinstance(out, tuple) and len(out) == 3 else None
    r = Redis.from_url(s.redis_url, socket_timeout=5)
    try:
        bus = KeyBus(r, s.redis_prefix, None)  # type: ignore[arg-type]
        await bus.announce(h.id, old or (h.key_hash if what == "revoke" else None))
    finally:
        await r.aclose()


def _csv(v: str | None) -> list[str] | None:
    return None if v is None else [x.strip() for x in v.split(",") if x.strip()]


def _key_body(**kw: Any) -> Any:
    from llm_proxy.keys.records import KeyIn

    return _validated(KeyIn, {k: v for k, v in kw.items() if v is not None})


def _validated(model: Any, given: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(given)
    except ValidationError as e:
        for err in e.errors():
            typer.echo(f"error: {'.'.join(map(str, err['loc']))}: {err['msg']}", err=True)
        raise typer.Exit(1) from None


def _json_object(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError as e:
        typer.echo(f"error: --metadata is not JSON: {e}", err=True)
        raise typer.Exit(1) from None
    if not isinstance(doc, dict):
        typer.echo("error: --metadata must be a JSON object", err=True)
        raise typer.Exit(1)
    return doc


def _print(doc: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    rows = doc if isinstance(doc, list) else [doc]
    if not rows:
        typer.echo("(none)")
        return
    cols = [c for c in rows[0] if c not in ("metadata", "object")]
    table(rows, cols)


def table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    if not rows:
        typer.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6f}".rstrip("0").rstrip(".") if v else "0"
    if isinstance(v, list):
        return ",".join(map(str, v)) or "*"
    return str(v)


Models = Annotated[
    str | None, typer.Option(help="Allowed model globs, comma-separated: 'gpt-4o,claude-*'.")
]
Rpm = Annotated[int | None, typer.Option(help="Requests per minute.")]
Tpm = Annotated[int | None, typer.Option(help="Tokens per minute.")]
Parallel = Annotated[int | None, typer.Option("--max-parallel", help="Requests in flight at once.")]
Budget = Annotated[float | None, typer.Option(help="Max budget in USD per period.")]
Period = Annotated[str | None, typer.Option("--budget-period", help="30d, 7d, 1d, 12h, 1w.")]
Expires = Annotated[str | None, typer.Option(help="Expiry: 2027-01-01 or an ISO datetime.")]


@keys_cli.command("create")
def keys_create(
    config: ConfigOpt = None,
    name: Annotated[str | None, typer.Option(help="A name for people.")] = None,
    user: Annotated[str | None, typer.Option(help="Owner / user id.")] = None,
    team: Annotated[str | None, typer.Option(help="Team id.")] = None,
    models: Models = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_parallel: Parallel = None,
    budget: Budget = None,
    budget_period: Period = None,
    expires: Expires = None,
    admin: Annotated[bool, typer.Option(help="May use /admin.")] = False,
    metadata: Annotated[str | None, typer.Option(help="JSON object.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key; its secret is printed once (the store keeps only a hash)."""
    from llm_proxy.keys import store
    from llm_proxy.keys.records import public_view

    body = _key_body(
        name=name,
        user=user,
        team_id=team,
        models=_csv(models),
        rpm=rpm,
        tpm=tpm,
        max_parallel_requests=max_parallel,
        max_budget=budget,
        budget_period=budget_period,
        expires_at=expires,
        role="admin" if admin else None,
        metadata=_json_object(metadata),
    )
    h, secret = _run(config, lambda e, s: store.create_key(e, body))
    doc = {**public_view(h), "key": secret}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(
        f"id:     {h.id}\nprefix: {h.prefix}\nkey:    {secret}\n(shown once: only its hash is kept)"
    )


@keys_cli.command("list")
def keys_list(
    config: ConfigOpt = None,
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's keys.")] = None,
    revoked: Annotated[bool, typer.Option(help="Include revoked keys.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List keys (prefixes only: secrets are never stored)."""
    from llm_proxy.keys import store
    from llm_proxy.keys.records import public_view

    got = _run(
        config,
        lambda e, s: store.list_holders(e, "key", team_id=team, user=user, include_revoked=revoked),
    )
    docs = [public_view(h) for h in got]
    if as_json:
        typer.echo(json.dumps(docs, indent=2))
        return
    table(
        docs,
        [
            "id",
            "prefix",
            "name",
            "user",
            "team_id",
            "models",
            "rpm",
            "tpm",
            "max_budget",
            "budget_period",
            "spend",
            "expires_at",
            "disabled",
            "revoked_at",
        ],
    )


@keys_cli.command("update")
def keys_update(
    key_id: str,
    config: ConfigOpt = None,
    name: Annotated[str | None, typer.Option()] = None,
    user: Annotated[str | None, typer.Option()] = None,
    team: Annotated[str | None, typer.Option()] = None,
    models: Models = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_parallel: Parallel = None,
    budget: Budget = None,
    budget_period: Period = None,
    expires: Expires = None,
    disabled: Annotated[bool | None, typer.Option("--disabled/--enabled")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a key's fields (only the ones given)."""
    from llm_proxy.keys import store
    from llm_proxy.keys.records import public_view

    body = _key_body(
        name=name,
        user=user,
        team_id=team,
        models=_csv(models),
        rpm=rpm,
        tpm=tpm,
        max_parallel_requests=max_parallel,
        max_budget=budget,
        budget_period=budget_period,
        expires_at=expires,
        disabled=disabled,
    )
    h = _run(config, lambda e, s: store.update_key(e, key_id, body), notify="update")
    if h is None:
        typer.echo(f"error: no key with id {key_id}", err=True)
        raise typer.Exit(1)
    _print(public_view(h), as_json)


@keys_cli.command("revoke")
def keys_revoke(key_id: str, config: ConfigOpt = None) -> None:
    """Revoke a key: refused everywhere within key_refresh_interval (at once with Redis)."""
    from llm_proxy.keys import store

    h = _run(config, lambda e, s: store.revoke(e, "key", key_id), notify="revoke")
    if h is None:
        typer.echo(f"error: no live key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@keys_cli.command("rotate")
def keys_rotate(key_id: str, config: ConfigOpt = None) -> None:
    """A new secret for the key (same id, limits and spend); the old one stops working."""
    from llm_proxy.keys import store

    got = _run(config, lambda e, s: store.rotate(e, key_id), notify="rotate")
    if got is None:
        typer.echo(f"error: no live key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"id:  {key_id}\nkey: {got[1]}\n(shown once: only its hash is kept)")


@teams_cli.command("create")
def teams_create(
    name: str,
    config: ConfigOpt = None,
    models: Models = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_parallel: Parallel = None,
    budget: Budget = None,
    budget_period: Period = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a team; its limits and budget apply on top of its keys' own."""
    from llm_proxy.keys import store
    from llm_proxy.keys.records import TeamIn, public_view

    given: dict[str, Any] = {
        "name": name,
        "models": _csv(models),
        "rpm": rpm,
        "tpm": tpm,
        "max_parallel_requests": max_parallel,
        "max_budget": budget,
        "budget_period": budget_period,
    }
    body = _validated(TeamIn, {k: v for k, v in given.items() if v is not None})
    h = _run(config, lambda e, s: store.create_team(e, body))
    _print(public_view(h), as_json)


@teams_cli.command("list")
def teams_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    from llm_proxy.keys import store
    from llm_proxy.keys.records import public_view

    got = _run(config, lambda e, s: store.list_holders(e, "team"))
    docs = [public_view(h) for h in got]
    if as_json:
        typer.echo(json.dumps(docs, indent=2))
        return
    table(docs, ["id", "name", "models", "rpm", "tpm", "max_budget", "budget_period", "spend"])


@db_cli.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the store's migrations (the gateway also does this at start)."""
    from llm_proxy.store.db import upgrade_blocking

    typer.echo(f"store at head: {upgrade_blocking(_settings(config))}")


def spend(
    config: ConfigOpt = None,
    by: Annotated[str, typer.Option(help="key, team, user, model, provider or day.")] = "model",
    since: Annotated[str, typer.Option(help="7d, 24h, or a date.")] = "7d",
    until: Annotated[str | None, typer.Option(help="Last day (a date).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Spend grouped by key, team, user, model, provider or day (from the daily totals)."""
    from llm_proxy.spend.report import report, since_day

    if by not in ("key", "team", "user", "model", "provider", "day"):
        typer.echo(
            f"error: --by must be key, team, user, model, provider or day, not {by!r}", err=True
        )
        raise typer.Exit(1)
    try:
        first = since_day(since)
        last = since_day(until) if until else None
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    rows = _run(config, lambda e, s: report(e, by, first, last))  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no spend since {first}")
        return
    table(rows, [by, "requests", "errors", "prompt_tokens", "completion_tokens", "cost"])
    typer.echo(f"total: ${sum(r['cost'] for r in rows):.6f} since {first}")
