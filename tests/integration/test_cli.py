"""The CLI as a user runs it: check, version, and serve with a generated master key."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

EXE = [sys.executable, "-m", "llm_proxy"]


def _run(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LLM_PROXY_")}
    return subprocess.run(
        [*EXE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        cwd=cwd,
    )


def test_version() -> None:
    r = _run(["version"])
    assert r.returncode == 0
    assert re.match(r"llm-proxy \d+\.\d+\.\d+", r.stdout)


def test_check_reports_each_problem_with_file_line_and_path(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "port: 99999\n"
        "providers:\n"
        "  - name: a\n"
        "    type: openai\n"
        "    base_url: ftp://nope\n"
        "    api_key: ${MISSING_KEY_VAR}\n"
        "models:\n"
        "  - name: m\n"
        "    provider: ghost\n"
        "    model: x\n"
    )
    r = _run(["check", "--config", str(cfg)])
    assert r.returncode == 1
    err = r.stderr
    assert f"{cfg}:1: port:" in err
    assert f"{cfg}:5: providers[0].base_url: Value error, base_url must start with http" in err
    assert f"{cfg}:6: providers[0].api_key: environment variable MISSING_KEY_VAR is not set" in err


def test_check_unknown_provider_reference_has_line(tmp_path: Path) -> None:
    cfg = tmp_path / "ref.yaml"
    cfg.write_text("models:\n  - name: m\n    provider: ghost\n    model: x\n")
    r = _run(["check", "--config", str(cfg)])
    assert r.returncode == 1
    assert f"{cfg}:3: models[0].deployments[0].provider: unknown provider 'ghost'" in r.stderr


def test_check_passes_and_lists_env_references(tmp_path: Path) -> None:
    cfg = tmp_path / "good.yaml"
    cfg.write_text(
        "providers:\n  - name: local\n    base_url: ${LOCAL_URL:-http://127.0.0.1:9}/v1\n"
        "    api_key_env: LOCAL_KEY\n"
    )
    r = _run(["check", "--config", str(cfg)], env={"LOCAL_KEY": "k"})
    assert r.returncode == 0, r.stderr
    assert "LOCAL_URL" in r.stdout and "config OK" in r.stdout
    r = _run(["check", "--config", str(cfg)])
    assert r.returncode == 1
    assert "api_key_env: environment variable LOCAL_KEY is not set" in r.stderr


def test_check_flags_bad_provider_base_url_env(tmp_path: Path) -> None:
    r = _run(["check"], env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "api.openai.com/v1"})
    assert r.returncode == 1
    assert "env: OPENAI_BASE_URL: must start with http:// or https://" in r.stderr
    r = _run(["check"], env={"OPENAI_API_KEY": "sk-x"})
    assert r.returncode == 0 and "provider openai enabled by OPENAI_API_KEY" in r.stdout


def test_check_broken_yaml_names_line(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("port: 1\nproviders: [\n  oops: :\n")
    r = _run(["check", "--config", str(cfg)])
    assert r.returncode == 1
    assert re.search(rf"{re.escape(str(cfg))}:\d+: invalid YAML", r.stderr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_zero_config_prints_key_once_and_echoes(tmp_path: Path) -> None:
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_PROXY_", "OPENAI_"))}
    env = {**base, "LLM_PROXY_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [*EXE, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        key = None
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and key is None:
            line = proc.stderr.readline()
            m = re.search(r"(sk-llmp-\S+)", line)
            key = m.group(1) if m else None
        assert key, "the generated master key was not printed"
        keyfile = tmp_path / "data" / "master_key.sha256"
        assert keyfile.stat().st_mode & 0o777 == 0o600
        assert key not in keyfile.read_text()
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        for _ in range(100):
            try:
                r = c.chat.completions.create(
                    model="mock/echo", messages=[{"role": "user", "content": "hi there"}]
                )
                break
            except openai.APIConnectionError:
                time.sleep(0.1)
        assert r.choices[0].message.content == "hi there"
        text = "".join(
            ch.choices[0].delta.content or ""
            for ch in c.chat.completions.create(
                model="mock/echo",
                messages=[{"role": "user", "content": "streamed hi"}],
                stream=True,
            )
        )
        assert text == "streamed hi"
    finally:
        proc.terminate()
        proc.wait(10)
    # Second start: the key is kept (hash only) and not printed again.
    proc = subprocess.Popen(
        [*EXE, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(2)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "sk-llmp-" not in err


@pytest.mark.parametrize("bad_env", [{"PORT": "notaport"}, {"MODEL_PROVIDER_MAP": "gpt-*"}])
def test_serve_refuses_bad_env_settings(bad_env: dict[str, str], tmp_path: Path) -> None:
    r = _run(["serve"], env={**bad_env, "LLM_PROXY_DATA_DIR": str(tmp_path)})
    assert r.returncode == 1
    assert "config error" in r.stderr
