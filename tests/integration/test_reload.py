"""Hot reload: a valid edit swaps the table atomically; an invalid one keeps the old table."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import default_config
from tests.fakes.openai import FakeOpenAI

USER = [{"role": "user", "content": "reload me"}]


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic, as editors and config managers do


def _until(cond: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_reload_adds_model_keeps_old_on_invalid_edit_and_logs_diff(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llm_proxy")
    base = default_config(fake_upstream[1]).replace("log_requests: true", "reload_interval: 0.1")
    rg = gateway_factory(base)
    c = rg.client()
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="fresh-model", messages=USER)

    added = base + "  - name: fresh-model\n    provider: fakeai\n    model: fake-plain\n"
    _write(rg.config_path, added)
    assert _until(lambda: rg.gw.reloads == 1)
    r = c.chat.completions.create(model="fresh-model", messages=USER)
    assert r.choices[0].message.content == "fake: reload me"
    diffs = [
        rec.__dict__["diff"]
        for rec in caplog.records
        if rec.__dict__.get("event") == "config_reloaded"
    ]
    assert diffs and diffs[-1]["models_added"] == ["fresh-model"]
    assert diffs[-1]["providers_changed"] == [] and diffs[-1]["models_removed"] == []

    # An invalid edit (unknown provider) is logged with its line; the old table keeps serving.
    _write(
        rg.config_path,
        added.replace(
            "provider: fakeai\n    model: fake-plain\n", "provider: nowhere\n    model: x\n"
        ),
    )
    assert _until(
        lambda: any(r.__dict__.get("event") == "config_reload_failed" for r in caplog.records)
    )
    failed = next(r for r in caplog.records if r.__dict__.get("event") == "config_reload_failed")
    assert any("unknown provider 'nowhere'" in p and ":" in p for p in failed.__dict__["problems"])
    assert rg.gw.reloads == 1
    r = c.chat.completions.create(model="fresh-model", messages=USER)
    assert r.choices[0].message.content == "fake: reload me"

    # Broken YAML: same.
    _write(rg.config_path, "providers: [unclosed\n")
    time.sleep(0.4)
    assert rg.gw.reloads == 1
    assert c.chat.completions.create(model="gpt-test", messages=USER).choices[0].message.content


def test_in_flight_stream_survives_a_reload_that_removes_its_model(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    base = default_config(fake_upstream[1]).replace("log_requests: true", "reload_interval: 0.1")
    rg = gateway_factory(base)
    c = rg.client()
    got: list[str] = []

    def consume() -> None:
        for ch in c.chat.completions.create(
            model="gpt-test", messages=USER, stream=True, extra_body={"fake_delay": 0.2}
        ):
            if ch.choices:
                got.append(ch.choices[0].delta.content or "")

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)
    _write(rg.config_path, base.replace("name: gpt-test", "name: gpt-renamed"))
    assert _until(lambda: rg.gw.reloads == 1)
    t.join(10)
    assert "".join(got) == "fake: reload me"
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="gpt-test", messages=USER)
    assert c.chat.completions.create(model="gpt-renamed", messages=USER).model == "gpt-renamed"


def test_reload_rotates_the_master_key(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    base = default_config(fake_upstream[1]).replace("log_requests: true", "reload_interval: 0.1")
    rg = gateway_factory(base)
    assert rg.client().chat.completions.create(model="gpt-test", messages=USER).choices
    _write(rg.config_path, base.replace("sk-gw-test-master", "sk-gw-rotated-key"))
    assert _until(lambda: rg.gw.reloads == 1)
    with pytest.raises(openai.AuthenticationError):
        rg.client().chat.completions.create(model="gpt-test", messages=USER)
    r = rg.client(api_key="sk-gw-rotated-key").chat.completions.create(
        model="gpt-test", messages=USER
    )
    assert r.choices[0].message.content == "fake: reload me"


def test_pool_of_a_removed_provider_closes_after_grace_unless_readded(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    url = fake_upstream[1]

    def cfg(with_b: bool) -> str:
        text = (
            "master_key: sk-gw-test-master\nreload_interval: 0.05\nproviders:\n"
            f"  - name: a\n    base_url: {url}/v1\n    timeouts: {{connect: 1, first_byte: 1, total: 0.5}}\n"
        )
        if with_b:
            text += f"  - name: b\n    base_url: {url}/v1\n    timeouts: {{connect: 1, first_byte: 1, total: 0.5}}\n"
        return text

    rg = gateway_factory(cfg(True))
    c = rg.client()
    for name in ("a", "b"):
        assert c.chat.completions.create(model=f"{name}/fake-plain", messages=USER).choices
    pools = rg.gw.http._sessions
    b_pool = next(k for k in pools if k.startswith("b|"))
    _write(rg.config_path, cfg(False))  # b removed...
    assert _until(lambda: rg.gw.reloads == 1)
    time.sleep(0.2)
    _write(rg.config_path, cfg(True) + "# touched\n")  # ...and back before its grace ends
    assert _until(lambda: rg.gw.reloads == 2)
    time.sleep(0.6)
    assert b_pool in pools and not pools[b_pool].closed
    assert c.chat.completions.create(model="b/fake-plain", messages=USER).choices
    _write(rg.config_path, cfg(False) + "# again\n")  # removed for good: closed after 0.5 s
    assert _until(lambda: rg.gw.reloads == 3)
    assert _until(lambda: b_pool not in pools, timeout=3)
    assert c.chat.completions.create(model="a/fake-plain", messages=USER).choices
