"""Service-account access tokens for Vertex AI, over real HTTP to a fake Google token endpoint."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_proxy.config.load import ConfigError
from llm_proxy.errors import UpstreamError
from llm_proxy.providers.google_auth import ServiceAccountTokenSource, load_service_account
from tests.fakes.google_token import FakeGoogleToken, make_service_account
from tests.fakes.server import ServerThread


@pytest.fixture(scope="module")
def token_server() -> Iterator[tuple[FakeGoogleToken, ServerThread]]:
    fake = FakeGoogleToken()
    server = ServerThread(fake).start()
    yield fake, server
    server.stop()


@pytest.fixture
def fake(token_server: tuple[FakeGoogleToken, ServerThread]) -> FakeGoogleToken:
    fake, _ = token_server
    fake.reset()
    return fake


@pytest.fixture
def account(
    token_server: tuple[FakeGoogleToken, ServerThread], fake: FakeGoogleToken
) -> dict[str, Any]:
    _, server = token_server
    info, public_pem = make_service_account(f"{server.url}/token")
    fake.trust(info["private_key_id"], public_pem)
    return info


async def test_first_call_fetches_and_second_reuses(
    fake: FakeGoogleToken, account: dict[str, Any]
) -> None:
    source = ServiceAccountTokenSource(account)
    assert await source.authorization() == "Bearer ya29.fake-1"
    assert fake.requests == 1
    claims = fake.claims[0]
    assert claims["iss"] == "gw@fake-project.iam.gserviceaccount.com"
    assert claims["aud"] == "https://oauth2.googleapis.com/token"
    assert "https://www.googleapis.com/auth/cloud-platform" in claims["scope"].split()
    assert await source.authorization() == "Bearer ya29.fake-1"
    assert fake.requests == 1


async def test_token_inside_refresh_margin_is_refreshed(
    fake: FakeGoogleToken, account: dict[str, Any]
) -> None:
    fake.expires_in = 200  # less than the 5-minute margin: never worth caching
    source = ServiceAccountTokenSource(account)
    assert await source.authorization() == "Bearer ya29.fake-1"
    assert await source.authorization() == "Bearer ya29.fake-2"
    assert await source.authorization() == "Bearer ya29.fake-3"
    assert fake.requests == 3


async def test_concurrent_callers_share_one_refresh(
    fake: FakeGoogleToken, account: dict[str, Any]
) -> None:
    fake.delay = 0.2
    source = ServiceAccountTokenSource(account)
    headers = await asyncio.gather(*(source.authorization() for _ in range(20)))
    assert set(headers) == {"Bearer ya29.fake-1"}
    assert fake.requests == 1


async def test_wrong_key_fails_without_leaking_key_material(
    fake: FakeGoogleToken, account: dict[str, Any]
) -> None:
    # Same key id and token URI as the trusted account, signed with a different private key.
    other, _ = make_service_account(account["token_uri"])
    forged = {**other, "private_key_id": account["private_key_id"]}
    source = ServiceAccountTokenSource(forged)
    with pytest.raises(UpstreamError) as info:
        await source.authorization()
    err = info.value
    assert err.code == "upstream_auth_failed"
    assert err.message.startswith("Could not obtain a Google access token")
    assert "invalid_grant" in err.message and "signature" in err.message
    rendered = err.message + err.to_json().decode()
    assert "PRIVATE KEY" not in rendered
    for line in forged["private_key"].splitlines()[1:-1]:
        assert line not in rendered
    assert fake.issued == 0


async def test_unreachable_token_endpoint_is_upstream_auth_failed(
    account: dict[str, Any],
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = ServiceAccountTokenSource({**account, "token_uri": f"http://127.0.0.1:{port}/token"})
    with pytest.raises(UpstreamError) as info:
        await source.authorization()
    assert info.value.code == "upstream_auth_failed"


def test_load_service_account_reads_a_key_file(tmp_path: Path, account: dict[str, Any]) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(account))
    assert load_service_account(str(path)) == account


def test_load_service_account_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        load_service_account(str(path))
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)


def test_load_service_account_not_json(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text("type: service_account\n")
    with pytest.raises(ConfigError) as info:
        load_service_account(str(path))
    assert "not valid JSON" in str(info.value)


def test_load_service_account_rejects_user_credentials(tmp_path: Path) -> None:
    path = tmp_path / "adc.json"
    path.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "x.apps.googleusercontent.com",
                "client_secret": "secret",
                "refresh_token": "1//refresh",
            }
        )
    )
    with pytest.raises(ConfigError) as info:
        load_service_account(str(path))
    assert "'authorized_user'" in str(info.value)
    assert "service_account" in str(info.value)
    assert "1//refresh" not in str(info.value)


def test_load_service_account_missing_fields(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "client_email": "a@b"}))
    with pytest.raises(ConfigError) as info:
        load_service_account(str(path))
    assert "private_key" in str(info.value) and "token_uri" in str(info.value)


def test_bad_private_key_is_a_config_error(account: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        ServiceAccountTokenSource({**account, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA"})
    assert "AAAA" not in str(info.value)
