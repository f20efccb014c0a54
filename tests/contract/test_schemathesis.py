"""Schemathesis property tests against the gateway's own OpenAPI document.

A gateway with only the built-in mock provider ("mock/echo", "mock/lorem") is served over real
loopback HTTP; its GET /openapi.json is loaded with schemathesis and every documented operation
is exercised with generated requests (the documented examples first, then positive and negative
fuzzing, then schemathesis' coverage cases), each sent with the master key. Every response must:

- not be a 5xx (`not_a_server_error`);
- carry a documented status code (`status_code_conformance`);
- carry a documented content type (`content_type_conformance`);
- have a body that matches the documented schema (`response_schema_conformance`).

Nothing is excluded: the admin writes run against the default SQLite store in the gateway's
data dir, /ws is a websocket route (never in the OpenAPI document) and /metrics is checked like
any other operation. Generated model names are unknown and answer 404 (documented on the
pipeline endpoints; an OpenAI-shaped error body).

Deterministic (derandomized Hypothesis, no example database) so CI sees the same cases; a
failure is reported per operation with the response and a curl line that reproduces it.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.contract import _pytest_compat  # noqa: F401  (schemathesis 4 on pytest >= 9.2)

CONFIG = f"master_key: {MASTER_KEY}\nlog_requests: false\n"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Every operation is a subtest of the one pytest test below: the timeout covers them all.
pytestmark = pytest.mark.timeout(300)
MAX_EXAMPLES = 25  # fuzzed cases per operation (examples and coverage cases come on top)


@pytest.fixture
def gateway_schema(gateway_factory: GatewayFactory) -> schemathesis.BaseSchema:
    gw = gateway_factory(CONFIG)
    schema = schemathesis.openapi.from_url(f"{gw.url}/openapi.json", timeout=10)
    schema.config.update(base_url=gw.url, headers=AUTH, request_timeout=20)
    # The bearer scheme is not a generated parameter: every case carries the master key (else
    # schemathesis' negative cases drop the header, and the call is only ever a 401).
    schema.config.generation.update(
        max_examples=MAX_EXAMPLES, deterministic=True, with_security_parameters=False
    )
    # The key is a test constant: keep it (and `max_tokens`) in the "Reproduce with" curl lines.
    schema.config.output.sanitization.update(enabled=False)
    return schema


schema = schemathesis.pytest.from_fixture("gateway_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_gateway_conforms_to_its_openapi(case: schemathesis.Case) -> None:
    """One subtest per documented operation; a failure names it and prints a curl repro."""
    case.call_and_validate(headers=AUTH, checks=CHECKS)
