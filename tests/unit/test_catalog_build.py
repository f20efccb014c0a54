from __future__ import annotations

from llm_proxy.catalog import build
from llm_proxy.config.schema import Settings
from llm_proxy.runtime import compile_runtime, hash_key


def test_an_id_taken_by_a_slashed_name_keeps_its_real_provider() -> None:
    settings = Settings.model_validate(
        {
            "models": [
                {"name": "mock/smart", "provider": "mock", "model": "echo"},
                {"name": "smart", "provider": "mock", "model": "lorem"},
                {"name": "plain", "provider": "mock", "model": "echo"},
            ]
        }
    )
    cat = build(compile_runtime(settings, {}, hash_key("k")))
    assert [(e.id, e.model, e.provider) for e in cat.entries] == [
        ("mock/smart", "mock/smart", "mock"),
        ("smart", "smart", "mock"),  # "mock/smart" is taken: its bare name, provider mock
        ("mock/plain", "plain", "mock"),
    ]
