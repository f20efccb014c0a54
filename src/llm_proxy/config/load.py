"""Read the YAML file, expand ${ENV}, apply env overrides, validate; errors carry path and line."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llm_proxy.config.schema import Settings

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Settings that may come from the environment: LLM_PROXY_<NAME> first, then the seeds' names.
_ENV_NAMES: dict[str, tuple[str, ...]] = {
    "host": ("HOST",),
    "port": ("PORT",),
    "workers": ("WEB_CONCURRENCY",),
    "log_level": ("LOG_LEVEL",),
    "log_requests": ("LOG_REQUESTS",),
    "data_dir": (),
    "master_key": (),
    "request_timeout": (),
    "connect_timeout": (),
    "first_byte_timeout": (),
    "max_concurrent_requests": ("MAX_CONCURRENT_REQUESTS",),
    "max_queued_requests": (),
    "queue_timeout": (),
    "max_request_bytes": ("MAX_REQUEST_BYTES",),
    "body_read_timeout": (),
    "cors_allow_origins": ("CORS_ALLOW_ORIGINS",),
    "public_paths": (),
    "model_provider_map": ("MODEL_PROVIDER_MAP",),
    "default_provider": ("LLM_PROVIDER",),
    "reload_interval": (),
    "num_retries": (),
    "max_attempts": (),
    "max_request_time": (),
    "circuit_breaker_threshold": (),
    "circuit_breaker_timeout": (),
    "cooldown_time": (),
    "environment": ("NODE_ENV", "ENVIRONMENT"),
    "database_url": ("DATABASE_URL",),
    "database_schema": (),
    "redis_url": ("REDIS_URL",),
    "redis_prefix": (),
}


class ConfigError(Exception):
    """The config cannot be used; `problems` lists each one with its location."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class LoadedConfig:
    settings: Settings
    path: Path | None
    # Every ${VAR} the file referenced: (name, set?, location).
    env_refs: list[tuple[str, bool, str]] = field(default_factory=list)
    text_hash: int = 0


def _line_index(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[(*path, k)] = key.start_mark.line + 1
            _line_index(value, (*path, k), out)
            out[(*path, k)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out)


def _fmt_path(path: tuple[Any, ...]) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "(root)"


def _where(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], source: str) -> str:
    probe = path
    shorthand = (*path[:2], "deployments") not in lines  # one deployment written inline
    if len(path) >= 4 and path[0] == "models" and path[2:4] == ("deployments", 0) and shorthand:
        probe = (*path[:2], *path[4:])
    for cut in range(len(probe), -1, -1):
        line = lines.get(probe[:cut])
        if line is not None:
            return f"{source}:{line}: {_fmt_path(path)}"
    return f"{source}: {_fmt_path(path)}"


def _expand(
    value: Any,
    path: tuple[Any, ...],
    env: dict[str, str],
    refs: list[tuple[str, bool, tuple[Any, ...]]],
    missing: list[tuple[str, tuple[Any, ...]]],
) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, (*path, k), env, refs, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), env, refs, missing) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        got = env.get(name)
        refs.append((name, got is not None, path))
        if got:
            return got
        if default is not None:
            return default
        if got is None:
            missing.append((name, path))
        return ""

    return _VAR.sub(sub, value)


def _env_overrides(env: dict[str, str], origin: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, aliases in _ENV_NAMES.items():
        for var in (f"LLM_PROXY_{name.upper()}", *aliases):
            if env.get(var, "") != "":
                out[name] = env[var]
                origin[name] = f"env {var}"
                break
    # Seed 001 gives REQUEST_TIMEOUT in milliseconds; our own setting is in seconds.
    if "request_timeout" not in out and env.get("REQUEST_TIMEOUT"):
        origin["request_timeout"] = "env REQUEST_TIMEOUT (milliseconds)"
        try:
            out["request_timeout"] = float(env["REQUEST_TIMEOUT"]) / 1000.0
        except ValueError:
            out["request_timeout"] = env["REQUEST_TIMEOUT"]
    # Seed 004: MAX_REQUEST_BYTES=0 disables the check.
    ws = _ws_env(env)
    if ws:
        out["websocket"] = ws
        origin["websocket"] = "env " + " / ".join(_WS_ENV[k] for k in ws)
    return out


_WS_ENV = {"max_connections": "WS_MAX_CONNECTIONS", "heartbeat_interval": "WS_HEARTBEAT_INTERVAL"}


def _ws_env(env: dict[str, str]) -> dict[str, Any]:
    """Seed 001's WS_MAX_CONNECTIONS and WS_HEARTBEAT_INTERVAL (milliseconds; ours is seconds)."""
    out: dict[str, Any] = {}
    if env.get("WS_MAX_CONNECTIONS"):
        out["max_connections"] = env["WS_MAX_CONNECTIONS"]
    raw = env.get("WS_HEARTBEAT_INTERVAL")
    if raw:
        try:
            out["heartbeat_interval"] = float(raw) / 1000.0
        except ValueError:
            out["heartbeat_interval"] = raw  # validation names the variable
    return out


def _merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; the `websocket` block (which env vars fill in part) merges key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            old = out.get(k)
            if k == "websocket" and isinstance(old, dict) and isinstance(v, dict):
                v = {**old, **v}
            out[k] = v
    return out


def load_config(
    path: str | Path | None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> LoadedConfig:
    """Build Settings from an optional YAML file, the environment and CLI overrides."""
    env = dict(os.environ) if env is None else env
    raw: dict[str, Any] = {}
    lines: dict[tuple[Any, ...], int] = {}
    source = "<env>"
    text = ""
    p = Path(path) if path else None
    refs: list[tuple[str, bool, tuple[Any, ...]]] = []
    missing: list[tuple[str, tuple[Any, ...]]] = []
    if p is not None:
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError([f"{source}: cannot read: {e.strerror or e}"]) from e
        except UnicodeDecodeError as e:
            raise ConfigError([f"{source}: not UTF-8 text: {e}"]) from e
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            raise ConfigError([f"{where}: invalid YAML: {getattr(e, 'problem', e)}"]) from e
        if node is not None:
            _line_index(node, (), lines)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError([f"{source}:1: the config file must be a mapping of settings"])
        raw = _expand(loaded, (), env, refs, missing)
    problems = [
        f"{_where(pth, lines, source)}: environment variable {name} is not set"
        for name, pth in missing
    ]
    origin: dict[str, str] = {}
    env_values = _env_overrides(env, origin)
    origin.update({k: f"--{k.replace('_', '-')}" for k in overrides or {}})
    merged = _merged(raw, env_values, overrides or {})
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            head = origin.get(str(loc[0])) if loc else None
            where = f"{head}: {_fmt_path(loc)}" if head else _where(loc, lines, source)
            problems.append(f"{where}: {err['msg']}")
    else:
        for loc, msg in settings.reference_problems():
            problems.append(f"{_where(loc, lines, source)}: {msg}")
    if problems:
        raise ConfigError(problems)
    env_refs = [(n, ok, _where(pth, lines, source)) for n, ok, pth in refs]
    return LoadedConfig(settings=settings, path=p, env_refs=env_refs, text_hash=hash(text))


def process_env() -> dict[str, str]:
    """A copy of the process environment (the one place outside tests that reads it)."""
    return dict(os.environ)
