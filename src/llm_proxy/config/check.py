"""`llm-proxy check`: every problem in the config and the environment it relies on, with locations."""

from __future__ import annotations

from llm_proxy.config.load import ConfigError, load_config, process_env
from llm_proxy.providers.registry import SPECS


def check_config(
    path: str | None, env: dict[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """(problems, notes). Problems make `check` exit 1 (seed 003's validate_env, grown up)."""
    env = process_env() if env is None else env
    try:
        loaded = load_config(path, env)
    except ConfigError as e:
        return e.problems, []
    from llm_proxy.runtime import compile_runtime

    problems: list[str] = []
    notes: list[str] = []
    source = path or "<env>"
    s = loaded.settings
    try:
        compile_runtime(s, env, b"\0" * 32)
    except ConfigError as e:
        problems.extend(e.problems)
    for i, p in enumerate(s.providers):
        where = f"{source}: providers[{i}] ({p.name})"
        if p.api_key_env and not env.get(p.api_key_env):
            problems.append(f"{where}.api_key_env: environment variable {p.api_key_env} is not set")
    for name, is_set, where in loaded.env_refs:
        notes.append(f"{where}: ${{{name}}} {'is set' if is_set else 'is not set (default used)'}")
    for spec in SPECS.values():
        var = next((v for v in spec.key_env if env.get(v)), None)
        if var:
            notes.append(f"env: provider {spec.name} enabled by {var}")
        for url_var in spec.base_url_env:
            url = env.get(url_var)
            if url and not url.startswith(("http://", "https://")):
                problems.append(
                    f"env: {url_var}: must start with http:// or https:// (got {url!r})"
                )
    if not s.master_key:
        notes.append(
            "master key: none configured; one is generated on first start "
            f"(hash kept in {s.data_dir}/master_key.sha256)"
        )
    return problems, notes
