"""llm-proxy serve | check | version (kept thin: the work lives in the package)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from llm_proxy import __version__

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="llm-proxy: an LLM gateway.")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: none, or $LLM_PROXY_CONFIG)."),
]


def _config_path(config: Path | None) -> str | None:
    from llm_proxy.config.load import process_env

    if config is not None:
        return str(config)
    return process_env().get("LLM_PROXY_CONFIG") or None


@cli.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
) -> None:
    """Run the gateway."""
    import os

    from llm_proxy.auth import ensure_master_key
    from llm_proxy.config.load import ConfigError, load_config, process_env
    from llm_proxy.runtime import compile_runtime
    from llm_proxy.server import run

    path = _config_path(config)
    overrides = {k: v for k, v in (("host", host), ("port", port), ("workers", workers)) if v}
    try:
        loaded = load_config(path, process_env(), overrides)
    except ConfigError as e:
        for p in e.problems:
            typer.echo(f"config error: {p}", err=True)
        raise typer.Exit(1) from None
    s = loaded.settings
    env = process_env()
    digest, new_key = ensure_master_key(s.master_key, s.data_dir)
    try:
        compile_runtime(s, env, digest)  # the workers do the same; fail here, once, readably
    except ConfigError as e:
        for p in e.problems:
            typer.echo(f"config error: {p}", err=True)
        raise typer.Exit(1) from None
    if new_key:
        keyfile = Path(s.data_dir) / "master_key.sha256"
        typer.echo(
            f"\n  Generated master key (shown once; only its hash is kept in {keyfile}):\n\n"
            f"    {new_key}\n\n"
            f"  Use it as the API key: Authorization: Bearer <key>. Lost it? Delete {keyfile}\n"
            f"  and restart, or set LLM_PROXY_MASTER_KEY.\n",
            err=True,
        )
    typer.echo(
        f"llm-proxy {__version__} serving on http://{s.host}:{s.port} "
        f"(workers={s.workers}, config={path or 'none'})",
        err=True,
    )
    # Workers are separate processes: hand them the same inputs through the environment.
    if path:
        os.environ["LLM_PROXY_CONFIG"] = str(Path(path).resolve())
    for k, v in overrides.items():
        os.environ[f"LLM_PROXY_{k.upper()}"] = str(v)
    os.environ["LLM_PROXY_DATA_DIR"] = str(Path(s.data_dir).resolve())
    run(s.host, s.port, s.workers, s.log_level)


@cli.command()
def check(config: ConfigOpt = None) -> None:
    """Validate the config and every environment variable it references; exit 1 on any problem."""
    from llm_proxy.config.check import check_config

    problems, notes = check_config(_config_path(config))
    for n in notes:
        typer.echo(n)
    for p in problems:
        typer.echo(f"error: {p}", err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) found.", err=True)
        raise typer.Exit(1)
    typer.echo("config OK")


@cli.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"llm-proxy {__version__} (Python {sys.version.split()[0]})")


def _store_commands() -> None:
    from llm_proxy.cli_store import db_cli, keys_cli, spend, teams_cli

    cli.add_typer(keys_cli, name="keys")
    cli.add_typer(teams_cli, name="teams")
    cli.add_typer(db_cli, name="db")
    cli.command("spend")(spend)


_store_commands()


def main() -> None:
    cli()


__all__ = ["cli", "main"]
