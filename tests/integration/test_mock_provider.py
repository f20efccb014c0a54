"""The built-in mock provider: echo, lorem, errors; deterministic usage."""

from __future__ import annotations

import openai
import pytest

from llm_proxy.providers.mock import LOREM


def test_echo_plain_and_stream(client: openai.OpenAI) -> None:
    msgs = [{"role": "system", "content": "sys words"}, {"role": "user", "content": "echo me back"}]
    r = client.chat.completions.create(model="mock/echo", messages=msgs)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "echo me back"
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (5, 3)
    chunks = list(
        client.chat.completions.create(
            model="mock/echo", messages=msgs, stream=True, stream_options={"include_usage": True}
        )
    )  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo me back"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 8


def test_lorem_streams_n_deterministic_tokens(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="mock/lorem",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            max_tokens=12,
        )
    )
    toks = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(toks) == 12
    assert "".join(toks) == " ".join(LOREM[:12])


@pytest.mark.parametrize(
    ("model", "exc", "status"),
    [
        ("mock/error-429", openai.RateLimitError, 429),
        ("mock/error-500", openai.InternalServerError, 500),
        ("mock/error-401", openai.AuthenticationError, 401),
        ("mock/error-400", openai.BadRequestError, 400),
    ],
)
def test_error_models_answer_with_that_status(
    client: openai.OpenAI, model: str, exc: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(exc) as e:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == status
    assert f"mock error {status}" in e.value.message


def test_unknown_mock_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="mock/nope", messages=[{"role": "user", "content": "x"}]
        )
