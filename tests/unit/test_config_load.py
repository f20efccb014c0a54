from __future__ import annotations

from pathlib import Path

import pytest

from llm_proxy.config.load import ConfigError, load_config


def test_env_interpolation_defaults_and_escape(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("port: ${P:-9001}\nhost: ${H}\nenvironment: cost$$5\n")
    s = load_config(p, {"H": "127.0.0.2"}).settings
    assert (s.port, s.host, s.environment) == (9001, "127.0.0.2", "cost$5")


def test_seed_env_names_and_precedence(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("port: 1000\nlog_level: debug\n")
    env = {
        "PORT": "2000",
        "LLM_PROXY_PORT": "3000",
        "REQUEST_TIMEOUT": "30000",
        "CORS_ALLOW_ORIGINS": "http://a, http://b",
        "MODEL_PROVIDER_MAP": "gpt-*=openai",
        "MAX_REQUEST_BYTES": "0",
        "LOG_REQUESTS": "true",
    }
    s = load_config(p, env, {"port": 4000}).settings
    assert s.port == 4000
    assert load_config(p, env).settings.port == 3000
    assert s.request_timeout == 30.0  # seed 001: milliseconds
    assert s.cors_allow_origins == ["http://a", "http://b"]
    assert s.model_provider_map == {"gpt-*": "openai"}
    assert (s.max_request_bytes, s.log_requests, s.log_level) == (0, True, "DEBUG")


def test_errors_carry_line_and_path_and_all_problems(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("port: 1\nproviders:\n  - name: ok\n    timeouts: {connect: -1}\n    bogus: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, {})
    probs = e.value.problems
    assert any(x.startswith(f"{p}:4: providers[0].timeouts.connect:") for x in probs), probs
    assert any(x.startswith(f"{p}:5: providers[0].bogus: Extra inputs") for x in probs), probs


def test_no_file_is_fine_and_non_mapping_is_not(tmp_path: Path) -> None:
    assert load_config(None, {}).settings.port == 8000
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(p, {})


def test_env_errors_name_the_variable_not_a_file_line(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("host: 127.0.0.1\nport: 8000\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, {"PORT": "abc"})
    assert e.value.problems[0].startswith("env PORT: port: Input should be a valid integer")


def test_provider_without_base_url_is_rejected_at_load(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("providers:\n  - name: mine\n    api_key: k\n  - name: openai\n    api_key: k\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, {})
    assert e.value.problems == [
        f"{p}:2: providers[0].base_url: required (no built-in default for this name)"
    ]


def test_log_level_aliases() -> None:
    assert load_config(None, {"LOG_LEVEL": "warn"}).settings.log_level == "WARNING"
