from __future__ import annotations

import pytest

from llm_proxy.config.schema import Settings
from llm_proxy.errors import ModelNotFoundError
from llm_proxy.routing.router import Router
from llm_proxy.runtime import compile_runtime, hash_key


def _router(env: dict[str, str] | None = None, **settings: object) -> Router:
    return Router(compile_runtime(Settings.model_validate(settings), env or {}, hash_key("k")))


def test_zero_config_env_enables_openai_and_prefix_rules() -> None:
    r = _router({"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/"})
    (d,) = r.resolve("gpt-4o")
    assert (d.provider.name, d.model, d.provider.chat_url) == (
        "openai",
        "gpt-4o",
        "http://127.0.0.1:9/v1/chat/completions",
    )
    assert d.provider.headers["Authorization"] == "Bearer sk-x"
    assert "sk-x" not in repr(d.provider)


def test_unconfigured_provider_names_the_variable() -> None:
    with pytest.raises(ModelNotFoundError, match="OPENAI_API_KEY"):
        _router().resolve("gpt-4o")


def test_exact_then_provider_slash_then_map_then_default() -> None:
    r = _router(
        {"VLLM_BASE_URL": "http://127.0.0.1:1/v1"},
        models=[{"name": "smart", "provider": "mock", "model": "echo"}],
        model_provider_map="local-*=vllm",
        default_provider="mock",
    )
    assert [(d.provider.name, d.model) for d in r.resolve("smart")] == [("mock", "echo")]
    assert [(d.provider.name, d.model) for d in r.resolve("mock/lorem")] == [("mock", "lorem")]
    assert [(d.provider.name, d.model) for d in r.resolve("local-llama")] == [
        ("vllm", "local-llama")
    ]
    assert [(d.provider.name, d.model) for d in r.resolve("whatever")] == [("mock", "whatever")]


def test_x_provider_forces_provider_and_unknown_one_is_404() -> None:
    r = _router(models=[{"name": "smart", "provider": "mock", "model": "echo"}])
    assert [(d.provider.name, d.model) for d in r.resolve("smart", "mock")] == [("mock", "echo")]
    assert [(d.provider.name, d.model) for d in r.resolve("mock/echo", "mock")] == [
        ("mock", "echo")
    ]
    with pytest.raises(ModelNotFoundError) as e:
        r.resolve("smart", "nowhere")
    assert e.value.code == "provider_not_found"


def test_unknown_model_404() -> None:
    with pytest.raises(ModelNotFoundError) as e:
        _router().resolve("totally-unknown")
    assert (e.value.status, e.value.code, e.value.param) == (404, "model_not_found", "model")


def test_provider_slash_public_model_is_that_models_deployment_there() -> None:
    # The catalog's ids (/api/v1/models) are <provider>/<public model>: they must be callable.
    r = _router(models=[{"name": "smart", "provider": "mock", "model": "echo"}])
    assert [(d.provider.name, d.model) for d in r.resolve("mock/smart")] == [("mock", "echo")]
    assert [(d.provider.name, d.model) for d in r.resolve("mock/lorem")] == [("mock", "lorem")]


def test_provider_slash_public_model_keeps_the_models_policy() -> None:
    r = _router(
        models=[
            {"name": "smart", "provider": "mock", "model": "echo", "fallbacks": ["other"]},
            {"name": "other", "provider": "mock", "model": "lorem"},
        ]
    )
    assert r.public_of("mock/smart") == "smart"
    assert r.public_of("mock/lorem") is None and r.public_of("smart") is None
    assert r.route("mock/smart").policy.fallbacks == ("other",)
