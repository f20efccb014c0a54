"""The official openai SDK against the gateway, with the fake OpenAI upstream behind it."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from tests.conftest import UPSTREAM_KEY, RunningGateway
from tests.fakes.openai import FakeOpenAI

USER = [{"role": "user", "content": "hello big world"}]


def test_plain_completion_returns_upstream_answer_under_public_model_name(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    r = client.chat.completions.create(model="gpt-test", messages=USER)
    assert r.choices[0].message.content == "fake: hello big world"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-test"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 4, 7)
    seen = fake.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.body is not None and seen.body["model"] == "fake-plain"
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert seen.headers["content-type"] == "application/json"


def test_unknown_parameters_pass_through_untouched(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    rf: Any = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    client.chat.completions.create(
        model="gpt-test",
        messages=USER,
        tools=tools,
        tool_choice="auto",
        response_format=rf,
        logprobs=True,
        top_logprobs=2,
        seed=7,
        n=1,
        parallel_tool_calls=False,
        reasoning_effort="low",
        temperature=0.25,
        user="u-1",
        extra_body={"vendor_knob": {"a": [1, 2]}, "top_k": 5},
    )
    body = fake.requests[-1].body
    assert body is not None
    expected = {
        "model": "fake-plain",
        "messages": USER,
        "tools": tools,
        "tool_choice": "auto",
        "response_format": rf,
        "logprobs": True,
        "top_logprobs": 2,
        "seed": 7,
        "n": 1,
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "temperature": 0.25,
        "user": "u-1",
        "vendor_knob": {"a": [1, 2]},
        "top_k": 5,
    }
    assert body == expected


def test_stream_relays_chunks_and_hides_usage_the_client_did_not_ask_for(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    chunks = list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "fake: hello big world"
    assert all(c.model == "gpt-test" for c in chunks)
    assert all(c.choices for c in chunks), "the usage-only chunk must be dropped"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    body = fake.requests[-1].body
    assert body is not None and body["stream_options"] == {"include_usage": True}


def test_stream_usage_when_client_asks(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-test", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        3,
        4,
        7,
    )


def test_tool_call_plain(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="tool-model", messages=USER)
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert msg.content is None
    assert msg.tool_calls is not None
    call = msg.tool_calls[0]
    assert call.id == "call_fake123"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert call.function.arguments == '{"city": "Paris", "unit": "c"}'  # type: ignore[union-attr]


def test_tool_call_streamed_arguments_reassemble(client: openai.OpenAI) -> None:
    args, names, ids, finish = "", [], [], None
    for c in client.chat.completions.create(model="tool-model", messages=USER, stream=True):
        for tc in c.choices[0].delta.tool_calls or []:
            assert tc.index == 0
            if tc.id:
                ids.append(tc.id)
            if tc.function and tc.function.name:
                names.append(tc.function.name)
            if tc.function and tc.function.arguments:
                args += tc.function.arguments
        finish = c.choices[0].finish_reason or finish
    assert (ids, names, args, finish) == (
        ["call_fake123"],
        ["get_weather"],
        '{"city": "Paris", "unit": "c"}',
        "tool_calls",
    )


def test_tool_result_round_trip_is_accepted(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    messages: list[Any] = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "and now?"},
    ]
    r = client.chat.completions.create(model="gpt-test", messages=messages)
    assert r.choices[0].message.content == "fake: and now?"
    assert fake.requests[-1].body is not None
    assert fake.requests[-1].body["messages"] == messages


def test_wrong_gateway_key_raises_authentication_error(gateway: RunningGateway) -> None:
    with pytest.raises(openai.AuthenticationError) as exc:
        gateway.client(api_key="sk-wrong").chat.completions.create(model="gpt-test", messages=USER)
    assert exc.value.status_code == 401
    assert exc.value.code == "invalid_api_key"


def test_unknown_model_raises_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="no-such-model", messages=USER)
    assert exc.value.code == "model_not_found"
    assert "no-such-model" in exc.value.message


def test_invalid_parameter_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-test", messages=USER, temperature=3)
    assert exc.value.param == "temperature"


def _with_models(gateway_factory: Any, url: str, *pairs: tuple[str, str]) -> RunningGateway:
    from tests.conftest import default_config

    extra = "".join(f"  - name: {n}\n    provider: fakeai\n    model: {m}\n" for n, m in pairs)
    return gateway_factory(default_config(url, extra))


@pytest.fixture
def errors_gateway(gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str]) -> RunningGateway:
    return _with_models(
        gateway_factory,
        fake_upstream[1],
        *((f"err-{s}", f"fake-error-{s}") for s in (400, 401, 404, 429, 500, 503)),
    )


def test_upstream_errors_map_to_sdk_exceptions(errors_gateway: RunningGateway) -> None:
    c = errors_gateway.client()
    cases: list[tuple[str, type[openai.APIStatusError], int]] = [
        ("err-400", openai.BadRequestError, 400),
        ("err-404", openai.NotFoundError, 404),
        ("err-429", openai.RateLimitError, 429),
        ("err-500", openai.InternalServerError, 502),
        ("err-503", openai.InternalServerError, 503),
    ]
    for model, exc_type, status in cases:
        with pytest.raises(exc_type) as exc:
            c.chat.completions.create(model=model, messages=USER)
        assert exc.value.status_code == status, model
        assert f"fake upstream error {model[4:]}" in exc.value.message
    with pytest.raises(openai.RateLimitError) as rl:
        c.chat.completions.create(model="err-429", messages=USER)
    assert rl.value.response.headers["retry-after"] == "2"


def test_upstream_refusing_gateway_credentials_is_not_the_clients_401(
    errors_gateway: RunningGateway,
) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        errors_gateway.client().chat.completions.create(model="err-401", messages=USER)
    assert exc.value.status_code == 502
    assert exc.value.code == "upstream_auth_failed"
    assert "sk-upstr" not in str(exc.value.body)


def test_context_length_error_is_typed(errors_gateway: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        errors_gateway.client().chat.completions.create(
            model="err-400", messages=USER, extra_body={"fake_context": True}
        )
    assert exc.value.code == "context_length_exceeded"


def test_upstream_hang_times_out_as_504(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    t0 = time.monotonic()
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="hang-model", messages=USER)
    assert exc.value.status_code == 504
    assert exc.value.code == "upstream_timeout"
    assert 2.5 < time.monotonic() - t0 < 8  # first_byte timeout is 3 s in the test config


def test_upstream_invalid_json_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model="badjson-model", messages=USER)
    assert exc.value.status_code == 502


def test_truncated_stream_ends_with_error_event_not_silence(client: openai.OpenAI) -> None:
    got: list[str] = []
    with pytest.raises(openai.APIError) as exc:
        for c in client.chat.completions.create(model="truncate-model", messages=USER, stream=True):
            got.append(c.choices[0].delta.content or "")
    assert "ended before the response was complete" in exc.value.message
    assert got == ["", "fake:"]


def test_midstream_upstream_error_reaches_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError) as exc:
        list(
            client.chat.completions.create(
                model="midstream-error-model", messages=USER, stream=True
            )
        )
    assert "error while processing" in exc.value.message


def test_forward_client_key_sends_clients_own_authorization(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    from tests.conftest import MASTER_KEY

    c = openai.OpenAI(
        base_url=f"{gateway.url}/v1",
        api_key="sk-users-own-key",
        max_retries=0,
        default_headers={"X-API-Key": MASTER_KEY},
    )
    # The gateway key travels in X-API-Key, so Authorization is the user's own upstream key.
    r = c.chat.completions.create(model="byok/fake-plain", messages=USER)
    assert r.choices[0].message.content == "fake: hello big world"
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-users-own-key"
    # With the gateway key in Authorization, it is never forwarded.
    gateway.client().chat.completions.create(model="byok/fake-plain", messages=USER)
    assert "authorization" not in fake.requests[-1].headers


def test_x_provider_header_forces_provider(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    r = client.chat.completions.create(
        model="fake-plain", messages=USER, extra_headers={"X-Provider": "fakeai"}
    )
    assert r.choices[0].message.content == "fake: hello big world"
    assert r.model == "fake-plain"
    assert fake.requests[-1].body is not None and fake.requests[-1].body["model"] == "fake-plain"


def test_provider_slash_model_routes_to_that_provider(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    r = client.chat.completions.create(model="fakeai/fake-tool", messages=USER)
    assert r.model == "fakeai/fake-tool"
    assert r.choices[0].finish_reason == "tool_calls"
    assert fake.requests[-1].body is not None and fake.requests[-1].body["model"] == "fake-tool"


def test_response_headers_name_provider_and_request_id(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=USER, extra_headers={"X-Request-ID": "req-abc-1"}
    )
    assert raw.headers["x-request-id"] == "req-abc-1"
    assert raw.headers["x-llm-proxy-provider"] == "fakeai"
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert raw.parse().choices[0].message.content == "fake: hello big world"
