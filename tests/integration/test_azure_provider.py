"""Azure OpenAI through the gateway: deployment in the path, api-version query, api-key header.

Wire format: https://learn.microsoft.com/azure/ai-services/openai/reference (chat completions);
the fake (tests/fakes/openai.py) serves the Azure path and checks the header and query.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, RunningGateway
from tests.fakes.openai import FakeOpenAI

AZ_KEY = "azure-fake-key-0123456789"
USER = [{"role": "user", "content": "hello azure"}]


def _config(url: str, api_version: str = "2024-10-21") -> str:
    text = (
        f"master_key: {MASTER_KEY}\nproviders:\n  - name: az\n    type: azure\n"
        f"    base_url: {url}\n    api_key: {AZ_KEY}\n    api_version: '{api_version}'\n"
        "    timeouts: {connect: 2, first_byte: 3, total: 10}\nmodels:\n"
    )
    for public, dep in (
        ("az-gpt", "fake-plain"),
        ("az-tool", "fake-tool"),
        *((f"az-e{s}", f"fake-error-{s}") for s in (400, 401, 404, 429, 500, 503)),
    ):
        text += f"  - name: {public}\n    provider: az\n    model: {dep}\n"
    return text


@pytest.fixture
def azure(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> RunningGateway:
    return gateway_factory(_config(fake_upstream[1]))


def test_plain_uses_deployment_path_query_and_api_key(
    azure: RunningGateway, fake: FakeOpenAI
) -> None:
    r = azure.client().chat.completions.create(model="az-gpt", messages=USER)
    assert r.choices[0].message.content == "fake: hello azure"
    assert r.model == "az-gpt"
    seen = fake.requests[-1]
    assert seen.path == "/openai/deployments/fake-plain/chat/completions"
    assert seen.headers["api-key"] == AZ_KEY and "authorization" not in seen.headers
    assert seen.query == "api-version=2024-10-21"


def test_stream_tool_round_trip_image_and_json_schema(
    azure: RunningGateway, fake: FakeOpenAI
) -> None:
    c = azure.client()
    text = "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(model="az-gpt", messages=USER, stream=True)
        if ch.choices
    )
    assert text == "fake: hello azure"
    r = c.chat.completions.create(model="az-tool", messages=USER)
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    follow: Any = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    r2 = c.chat.completions.create(
        model="az-gpt",
        messages=follow,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
    )
    assert r2.choices[0].message.content == "fake: and?"
    sent = fake.requests[-1].body
    assert sent["messages"] == follow and sent["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize(
    ("model", "exc", "status"),
    [
        ("az-e400", openai.BadRequestError, 400),
        ("az-e404", openai.NotFoundError, 404),
        ("az-e429", openai.RateLimitError, 429),
        ("az-e500", openai.InternalServerError, 502),
        ("az-e503", openai.InternalServerError, 503),
        ("az-e401", openai.InternalServerError, 502),
    ],
)
def test_errors(
    azure: RunningGateway, model: str, exc: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(exc) as e:
        azure.client().chat.completions.create(model=model, messages=USER)
    assert e.value.status_code == status
    if status == 429:
        assert e.value.response.headers["retry-after"] == "2"
    assert AZ_KEY not in json.dumps(e.value.body)


def test_context_length_error_is_typed(azure: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        azure.client().chat.completions.create(
            model="az-e400", messages=USER, extra_body={"fake_context": True}
        )
    assert e.value.code == "context_length_exceeded"


def test_zero_config_azure_needs_key_and_endpoint(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    gw = gateway_factory(
        f"master_key: {MASTER_KEY}\n",
        env={
            "AZURE_API_KEY": AZ_KEY,
            "AZURE_API_BASE": fake_upstream[1],
            "AZURE_API_VERSION": "2025-01-01",
        },
    )
    r = gw.client().chat.completions.create(model="azure/fake-plain", messages=USER)
    assert r.choices[0].message.content == "fake: hello azure"
    seen = fake.requests[-1]
    assert seen.path == "/openai/deployments/fake-plain/chat/completions"
    assert seen.query == "api-version=2025-01-01"
    only_key = gateway_factory(f"master_key: {MASTER_KEY}\n", env={"AZURE_API_KEY": AZ_KEY})
    with pytest.raises(openai.NotFoundError):
        only_key.client().chat.completions.create(model="azure/fake-plain", messages=USER)


def test_azure_ai_foundry_endpoint(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    cfg = (
        f"master_key: {MASTER_KEY}\nproviders:\n  - name: foundry\n    type: azure_foundry\n"
        f"    base_url: {fake_upstream[1]}/models\n    api_key: {AZ_KEY}\n"
    )
    gw = gateway_factory(cfg)
    r = gw.client().chat.completions.create(model="foundry/fake-plain", messages=USER)
    assert r.choices[0].message.content == "fake: hello azure"
    seen = fake.requests[-1]
    assert (seen.path, seen.query) == ("/models/chat/completions", "api-version=2024-05-01-preview")
    assert seen.headers["api-key"] == AZ_KEY and seen.body["model"] == "fake-plain"


def test_embeddings_and_images_use_the_deployment_path(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    cfg = _config(fake_upstream[1]) + "  - {name: az-emb, provider: az, model: emb-deploy}\n"
    client = gateway_factory(cfg).client()
    r = client.embeddings.create(model="az-emb", input=["a", "bb"], encoding_format="float")
    assert len(r.data) == 2 and r.model == "az-emb"
    seen = fake.requests[-1]
    assert seen.path == "/openai/deployments/emb-deploy/embeddings"
    assert seen.query == "api-version=2024-10-21" and seen.headers["api-key"] == AZ_KEY
    assert seen.body["input"] == ["a", "bb"]
    img = client.images.generate(model="az-emb", prompt="a cat")
    assert img.data and img.data[0].url
    assert fake.requests[-1].path == "/openai/deployments/emb-deploy/images/generations"
