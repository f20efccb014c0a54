"""Fixtures for the integration tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningGateway
from tests.fakes.openai import FakeOpenAI
from tests.integration.routing import config


@pytest.fixture
def make(gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI) -> Any:
    """make(models, extra="") -> a gateway routing `models` over providers a, b, c."""

    def build(models: str, extra: str = "") -> RunningGateway:
        return gateway_factory(config(fake_upstream[1], models, extra))

    return build
