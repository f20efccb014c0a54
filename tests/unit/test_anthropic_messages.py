"""Anthropic Messages translator, on payloads shaped like the examples in Anthropic's docs.

Sources (request/response/stream/error shapes and example values):
  Messages API (create a message)  https://docs.anthropic.com/en/api/messages
  Streaming messages               https://docs.anthropic.com/en/docs/build-with-claude/streaming
                                   https://platform.claude.com/docs/en/build-with-claude/streaming.md
  Tool use                         https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use
                                   (mirror: https://anthropic.mintlify.app/en/docs/agents-and-tools/tool-use/implement-tool-use)
  Vision (base64 and url sources)  https://docs.anthropic.com/en/docs/build-with-claude/vision
  Errors                           https://docs.anthropic.com/en/api/errors
                                   (mirror: https://mdsite.deno.dev/https://docs.anthropic.com/en/api/errors)
  Extended thinking                https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
                                   (mirror: https://anthropic.mintlify.app/en/docs/about-claude/models/extended-thinking-models)
  Prompt caching (usage fields)    https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching
  OpenAPI spec                     ../shared/specs/anthropic-hosted_spec.json (CreateMessageParams,
                                   Message, ToolChoice*, ErrorResponse, PromptCachingBetaUsage)
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from llm_proxy import errors as E
from llm_proxy.formats import anthropic_messages as am
from llm_proxy.formats.sse import payloads

USER = [{"role": "user", "content": "Hello, Claude"}]
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": WEATHER["function"]["parameters"],
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
ANT_URL = "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"


def up(body: dict[str, Any], params: dict[str, Any] | None = None, stream: bool = False) -> Any:
    return orjson.loads(am.to_upstream(body, "claude-opus-4-6", params or {}, stream))


def req(**kw: Any) -> dict[str, Any]:
    return {"model": "claude-pub", "messages": USER, **kw}


# --- requests -------------------------------------------------------------------------------


def test_request_system_developer_stop_user_and_default_max_tokens() -> None:
    body = {
        "model": "claude-pub",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "developer", "content": "Answer briefly."},
            *USER,
        ],
        "stop": "END",
        "user": "user-123",
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
    }
    assert up(body) == {
        "model": "claude-opus-4-6",
        "max_tokens": am.DEFAULT_MAX_TOKENS,
        "system": [
            {"type": "text", "text": "You are a helpful assistant."},
            {"type": "text", "text": "Answer briefly."},
        ],
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": {"user_id": "user-123"},
    }


def test_request_single_system_is_a_string_and_stream_is_set() -> None:
    body = req(
        messages=[{"role": "system", "content": "Be brief."}, *USER],
        max_tokens=1024,
        stop=["\n\nHuman:", "END"],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert up(body, stream=True) == {
        "model": "claude-opus-4-6",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "stop_sequences": ["\n\nHuman:", "END"],
        "stream": True,
    }


def test_request_system_parts_keep_cache_control() -> None:
    body = req(
        messages=[
            {
                "role": "system",
                "content": [
                    {
                        "type": "text",
                        "text": "You are an AI assistant tasked with analyzing literary works.",
                    },
                    {
                        "type": "text",
                        "text": "<the entire contents of Pride and Prejudice>",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            },
            *USER,
        ]
    )
    assert up(body)["system"] == [
        {"type": "text", "text": "You are an AI assistant tasked with analyzing literary works."},
        {
            "type": "text",
            "text": "<the entire contents of Pride and Prejudice>",
            "cache_control": {"type": "ephemeral"},
        },
    ]


def test_request_cache_control_on_parts_and_on_a_whole_message_passes_through() -> None:
    body = req(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "long document",
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "text", "text": "question"},
                ],
            },
            {"role": "assistant", "content": "answer"},
            {
                "role": "user",
                "content": "more",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ]
    )
    assert up(body)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "long document", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "question"},
            ],
        },
        {"role": "assistant", "content": "answer"},
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "more",
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                }
            ],
        },
    ]


def test_request_consecutive_same_role_turns_are_merged_and_empty_ones_dropped() -> None:
    body = req(
        messages=[
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": ""},
            {"role": "system", "content": "late system"},
            {"role": "user", "content": "three"},
            {"role": "assistant", "content": "four"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "five"}]},
        ]
    )
    out = up(body)
    assert out["system"] == "late system"
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one"},
                {"type": "text", "text": "two"},
                {"type": "text", "text": "three"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "four"}, {"type": "text", "text": "five"}],
        },
    ]


def test_request_images_become_base64_and_url_sources_and_pdf_a_document() -> None:
    body = req(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": ANT_URL, "detail": "high"}},
                    {
                        "type": "file",
                        "file": {
                            "filename": "a.pdf",
                            "file_data": "data:application/pdf;base64,JVBE",
                        },
                    },
                    {"type": "text", "text": "Describe these."},
                ],
            }
        ]
    )
    assert up(body)["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
                {"type": "image", "source": {"type": "url", "url": ANT_URL}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                },
                {"type": "text", "text": "Describe these."},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_request_tools_and_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    out = up(req(tools=[WEATHER], tool_choice=choice))
    assert out == {
        "model": "claude-opus-4-6",
        "max_tokens": am.DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": expected,
    }


def test_request_parallel_tool_calls_false_disables_parallel_tool_use() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    out = up(req(tools=[WEATHER, bare], parallel_tool_calls=False))
    assert out["tools"] == [
        WEATHER_TOOL,
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    named = {"type": "function", "function": {"name": "now"}}
    out = up(req(tools=[WEATHER, bare], tool_choice=named, parallel_tool_calls=False))
    assert out["tool_choice"] == {"type": "tool", "name": "now", "disable_parallel_tool_use": True}
    assert up(req(tools=[WEATHER], tool_choice="none", parallel_tool_calls=False))[
        "tool_choice"
    ] == {"type": "none"}
    assert "tool_choice" not in up(req(tool_choice="auto"))  # no tools: nothing to choose


def test_request_tool_history_becomes_tool_use_and_one_tool_result_turn() -> None:
    calls = [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": '{"location": "San Francisco, CA", "unit": "celsius"}',
            },
        },
        {
            "id": "toolu_01B",
            "type": "function",
            "function": {"name": "get_time", "arguments": ""},
        },
    ]
    body = req(
        messages=[
            {"role": "user", "content": "What's the weather and time in San Francisco?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": calls},
            {
                "role": "tool",
                "tool_call_id": "toolu_01A09q90qw90lq917835lq9",
                "content": "15 degrees",
            },
            {
                "role": "tool",
                "tool_call_id": "toolu_01B",
                "content": [{"type": "text", "text": "10:00"}],
            },
            {"role": "user", "content": "Thanks, and tomorrow?"},
        ],
        tools=[WEATHER],
    )
    assert up(body)["messages"] == [
        {"role": "user", "content": "What's the weather and time in San Francisco?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"location": "San Francisco, CA", "unit": "celsius"},
                },
                {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                    "content": "15 degrees",
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "content": [{"type": "text", "text": "10:00"}],
                },
                {"type": "text", "text": "Thanks, and tomorrow?"},
            ],
        },
    ]


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer"],
}


def test_request_json_schema_becomes_a_forced_tool() -> None:
    rf = {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True},
    }
    out = up(req(response_format=rf))
    assert out == {
        "model": "claude-opus-4-6",
        "max_tokens": am.DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "tools": [
            {
                "name": am.JSON_TOOL,
                "description": "Respond with JSON that matches input_schema.",
                "input_schema": SCHEMA,
            }
        ],
        "tool_choice": {"type": "tool", "name": am.JSON_TOOL},
    }


def test_request_json_object_uses_a_permissive_schema_and_text_format_is_ignored() -> None:
    out = up(req(response_format={"type": "json_object"}))
    assert out["tools"] == [
        {
            "name": am.JSON_TOOL,
            "description": "Respond with JSON that matches input_schema.",
            "input_schema": {"type": "object", "additionalProperties": True},
        }
    ]
    assert out["tool_choice"] == {"type": "tool", "name": am.JSON_TOOL}
    assert "tools" not in up(req(response_format={"type": "text"}))


def test_request_json_schema_with_client_tools_or_thinking_does_not_force_one_tool() -> None:
    rf = {
        "type": "json_schema",
        "json_schema": {"name": "v", "description": "Verdict", "schema": SCHEMA},
    }
    with_tools = up(req(response_format=rf, tools=[WEATHER]))
    assert with_tools["tools"] == [
        WEATHER_TOOL,
        {"name": am.JSON_TOOL, "description": "Verdict", "input_schema": SCHEMA},
    ]
    assert with_tools["tool_choice"] == {"type": "any"}
    thinking = up(req(response_format=rf, reasoning_effort="low"))
    assert thinking["tool_choice"] == {"type": "auto"}
    assert thinking["thinking"] == {"type": "enabled", "budget_tokens": 1024}


@pytest.mark.parametrize(
    ("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384), ("minimal", 1024)]
)
def test_request_reasoning_effort_becomes_a_thinking_budget(effort: str, budget: int) -> None:
    out = up(req(reasoning_effort=effort))
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] == am.DEFAULT_MAX_TOKENS + budget


def test_request_reasoning_budget_stays_under_the_clients_cap() -> None:
    out = up(req(reasoning_effort="high", max_completion_tokens=8000))
    assert (out["max_tokens"], out["thinking"]) == (
        8000,
        {"type": "enabled", "budget_tokens": 7999},
    )
    small = up(req(reasoning_effort="high", max_tokens=500))
    assert small["max_tokens"] == 500 and "thinking" not in small
    assert "thinking" not in up(req(reasoning_effort="none"))


def test_request_explicit_thinking_passes_through() -> None:
    thinking = {"type": "enabled", "budget_tokens": 10000}
    out = up(req(thinking=thinking, reasoning_effort="low", max_tokens=16000))
    assert (out["max_tokens"], out["thinking"]) == (16000, thinking)


def test_request_drops_openai_only_params_and_metadata() -> None:
    body = req(
        n=1,
        logprobs=True,
        top_logprobs=2,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        seed=7,
        logit_bias={"1": 2},
        metadata={"trace": "x"},
        store=True,
        service_tier="auto",
        max_completion_tokens=100,
    )
    assert up(body) == {
        "model": "claude-opus-4-6",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hello, Claude"}],
    }


def test_request_deployment_params_fill_only_what_the_client_left_out() -> None:
    params = {"temperature": 0.2, "top_k": 5, "max_tokens": 300, "reasoning_effort": "low"}
    out = up(req(temperature=1.0, max_completion_tokens=2048), params)
    assert out == {
        "model": "claude-opus-4-6",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "temperature": 1.0,
        "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    assert up(req(), {"max_tokens": 300})["max_tokens"] == 300


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (req(n=2), "n"),
        (req(reasoning_effort="extreme"), "reasoning_effort"),
        (req(tools=[{"type": "custom", "custom": {"name": "x"}}]), "tools[0]"),
        (req(tool_choice={"type": "function"}, tools=[WEATHER]), "tool_choice"),
        (
            req(
                messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
            ),
            "messages[0].content[0]",
        ),
        (
            req(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png,xx"}}
                        ],
                    }
                ]
            ),
            "messages[0].content[0]",
        ),
        (
            req(
                messages=[
                    *USER,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "t",
                                "type": "function",
                                "function": {"name": "f", "arguments": "[1]"},
                            }
                        ],
                    },
                ]
            ),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (req(messages=[{"role": "function", "name": "f", "content": "x"}]), "messages[0].role"),
        (
            req(
                tools=[{"type": "function", "function": {"name": am.JSON_TOOL}}],
                response_format={"type": "json_object"},
            ),
            "tools[0]",
        ),
    ],
)
def test_request_what_anthropic_cannot_express_is_a_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(E.InvalidRequestError) as e:
        up(body)
    assert (e.value.status, e.value.param) == (400, param)


# --- responses ------------------------------------------------------------------------------


def completion(
    message: dict[str, Any], finish: str, usage: dict[str, Any], id: str
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{id}",
        "object": "chat.completion",
        "created": 0,
        "model": "claude-pub",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


def usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def down(doc: dict[str, Any], created: int = 0) -> tuple[Any, dict[str, Any] | None]:
    out, u = am.from_upstream(orjson.dumps(doc), "claude-pub", created=created)
    return orjson.loads(out), u


def test_response_text_message_from_the_docs_example() -> None:
    doc = {
        "content": [{"text": "Hi! My name is Claude.", "type": "text"}],
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "model": "claude-opus-4-6",
        "role": "assistant",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "type": "message",
        "usage": {"input_tokens": 2095, "output_tokens": 503},
    }
    out, u = down(doc, created=1700000000)
    expected = completion(
        {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": None},
        "stop",
        usage(2095, 503),
        "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    )
    assert out == {**expected, "created": 1700000000}
    assert u == usage(2095, 503)


def test_response_tool_use_becomes_tool_calls() -> None:
    doc = {
        "id": "msg_01Aq9w938a90dw8q",
        "type": "message",
        "model": "claude-opus-4-6",
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "role": "assistant",
        "content": [
            {"type": "text", "text": "I'll check the weather."},
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "get_weather",
                "input": {"location": "San Francisco, CA", "unit": "celsius"},
            },
            {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
        ],
        "usage": {"input_tokens": 472, "output_tokens": 89},
    }
    out, _ = down(doc)
    assert out == completion(
        {
            "role": "assistant",
            "content": "I'll check the weather.",
            "refusal": None,
            "tool_calls": [
                {
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"location":"San Francisco, CA","unit":"celsius"}',
                    },
                },
                {
                    "id": "toolu_01B",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        "tool_calls",
        usage(472, 89),
        "msg_01Aq9w938a90dw8q",
    )
    doc["content"] = doc["content"][1:]  # tool calls only: content is null, as OpenAI sends
    assert down(doc)[0]["choices"][0]["message"]["content"] is None


def test_response_thinking_becomes_reasoning_content_and_redacted_thinking_is_ignored() -> None:
    doc = {
        "id": "msg_01Think",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-6",
        "content": [
            {
                "type": "thinking",
                "thinking": "Let me analyze this step by step...",
                "signature": "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL....",
            },
            {
                "type": "redacted_thinking",
                "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP...",
            },
            {"type": "text", "text": "Based on my analysis..."},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }
    out, _ = down(doc)
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Based on my analysis...",
        "refusal": None,
        "reasoning_content": "Let me analyze this step by step...",
    }


def test_response_json_tool_input_becomes_the_content_with_finish_stop() -> None:
    doc = {
        "id": "msg_01Json",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-6",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_01J",
                "name": am.JSON_TOOL,
                "input": {"answer": "yes", "confidence": 0.9},
            }
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 10},
    }
    out, _ = down(doc)
    assert out == completion(
        {"role": "assistant", "content": '{"answer":"yes","confidence":0.9}', "refusal": None},
        "stop",
        usage(5, 10),
        "msg_01Json",
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "stop"),  # no tool_use block came back: nothing to call
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        (None, "stop"),
    ],
)
def test_response_stop_reason_maps_to_finish_reason(stop_reason: str | None, finish: str) -> None:
    doc = {"id": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason}
    out, u = down(doc)
    assert out["choices"][0]["finish_reason"] == finish
    assert u is None and "usage" not in out


def test_response_usage_counts_cache_reads_and_writes_as_prompt() -> None:
    doc = {
        "id": "m",
        "content": [],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 21,
            "cache_creation_input_tokens": 188086,
            "cache_read_input_tokens": 1000,
            "output_tokens": 393,
        },
    }
    out, u = down(doc)
    assert u == usage(21 + 188086 + 1000, 393, cached=1000)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "", "refusal": None}


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"type":"message"}'])
def test_response_that_is_not_a_message_is_an_upstream_error(raw: bytes) -> None:
    with pytest.raises(E.UpstreamError) as e:
        am.from_upstream(raw, "claude-pub")
    assert e.value.status == 502


# --- streams --------------------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def decode(out: bytes) -> list[Any]:
    return [p.decode() if p == b"[DONE]" else orjson.loads(p) for p in payloads(out)]


def chunk(
    delta: dict[str, Any],
    finish: str | None = None,
    id: str = "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{id}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "claude-pub",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def run(
    raw: bytes, wants_usage: bool = False, cut: int | None = None
) -> tuple[list[Any], am.StreamState]:
    """Feed the transcript one event per segment, as a slow upstream would."""
    state = am.new_stream_state("claude-pub", wants_usage)
    events = [e + b"\n\n" for e in raw.split(b"\n\n") if e]
    out = b"".join(am.from_upstream_events(e, state) for e in events[:cut])
    return decode(out), state


BASIC = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-opus-4-6",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 15},
    },
    {"type": "message_stop"},
]


def test_stream_basic_text_from_the_docs_example() -> None:
    chunks, state = run(sse(*BASIC))
    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        chunk({"content": "!"}),
        chunk({}, "stop"),
        "[DONE]",
    ]
    assert (state.done, state.chunks, state.usage) == (True, 8, usage(25, 15))


def test_stream_usage_chunk_when_the_client_asked_and_one_segment_per_read() -> None:
    state = am.new_stream_state("claude-pub", True)
    chunks = decode(am.from_upstream_events(sse(*BASIC), state))
    assert chunks[-2:] == [
        {
            "id": "chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "claude-pub",
            "choices": [],
            "usage": usage(25, 15),
        },
        "[DONE]",
    ]
    assert am.from_upstream_events(sse({"type": "ping"}), state) == b""
    assert am.finish_stream(state, []) == b""


TOOL_ID = "msg_014p7gG3wDgGV9EUtLvnow3U"


def tool_transcript() -> bytes:
    """The docs' tool-use stream, with a second tool_use block (get_time) in the same shape."""

    def js(index: int, part: str) -> dict[str, Any]:
        delta = {"type": "input_json_delta", "partial_json": part}
        return {"type": "content_block_delta", "index": index, "delta": delta}

    def text(t: str) -> dict[str, Any]:
        return {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": t},
        }

    return sse(
        {
            "type": "message_start",
            "message": {
                "id": TOOL_ID,
                "type": "message",
                "role": "assistant",
                "model": "claude-opus-4-6",
                "stop_sequence": None,
                "usage": {"input_tokens": 472, "output_tokens": 2},
                "content": [],
                "stop_reason": None,
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        text("Okay"),
        text(", let's check the weather for San Francisco, CA:"),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {},
            },
        },
        js(1, ""),
        js(1, '{"location":'),
        js(1, ' "San'),
        js(1, " Francisc"),
        js(1, "o,"),
        js(1, ' CA"'),
        js(1, ", "),
        js(1, '"unit": "fah'),
        js(1, 'renheit"}'),
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01GetTime",
                "name": "get_time",
                "input": {},
            },
        },
        js(2, '{"location": "San'),
        js(2, ' Francisco, CA"}'),
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89},
        },
        {"type": "message_stop"},
    )


def test_stream_tool_use_transcript_gives_openai_tool_call_deltas() -> None:
    chunks, state = run(tool_transcript(), wants_usage=True)

    def args(index: int, part: str) -> dict[str, Any]:
        return chunk(
            {"tool_calls": [{"index": index, "function": {"arguments": part}}]}, id=TOOL_ID
        )

    def start(index: int, call_id: str, name: str) -> dict[str, Any]:
        fn = {"name": name, "arguments": ""}
        call = {"index": index, "id": call_id, "type": "function", "function": fn}
        return chunk({"tool_calls": [call]}, id=TOOL_ID)

    assert chunks == [
        chunk({"role": "assistant", "content": ""}, id=TOOL_ID),
        chunk({"content": "Okay"}, id=TOOL_ID),
        chunk({"content": ", let's check the weather for San Francisco, CA:"}, id=TOOL_ID),
        start(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        args(0, '{"location":'),
        args(0, ' "San'),
        args(0, " Francisc"),
        args(0, "o,"),
        args(0, ' CA"'),
        args(0, ", "),
        args(0, '"unit": "fah'),
        args(0, 'renheit"}'),
        start(1, "toolu_01GetTime", "get_time"),
        args(1, '{"location": "San'),
        args(1, ' Francisco, CA"}'),
        chunk({}, "tool_calls", id=TOOL_ID),
        {**chunk({}, id=TOOL_ID), "choices": [], "usage": usage(472, 89)},
        "[DONE]",
    ]
    assert state.usage == usage(472, 89)


def test_stream_tool_use_reassembles_with_the_openai_sdk_stream_helper() -> None:
    chunks, _ = run(tool_transcript())
    helper = ChatCompletionStreamState(input_tools=[WEATHER])  # type: ignore[list-item]
    for c in chunks[:-1]:
        helper.handle_chunk(ChatCompletionChunk.model_validate(c))
    final = helper.get_final_completion()
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert msg.content == "Okay, let's check the weather for San Francisco, CA:"
    assert [(t.id, t.function.name, t.function.arguments) for t in msg.tool_calls or []] == [
        (
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "get_weather",
            '{"location": "San Francisco, CA", "unit": "fahrenheit"}',
        ),
        ("toolu_01GetTime", "get_time", '{"location": "San Francisco, CA"}'),
    ]


def test_stream_extended_thinking_from_the_docs_example() -> None:
    raw = sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_01Think",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-opus-4-6",
                "stop_reason": None,
                "stop_sequence": None,
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {
                "type": "thinking_delta",
                "thinking": "Let me solve this step by step:\n\n1. First break down 27 * 453",
            },
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "\n2. 453 = 400 + 50 + 3"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {
                "type": "signature_delta",
                "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds...",
            },
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "27 * 453 = 12,231"},
        },
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}},
        {"type": "message_stop"},
    )
    chunks, state = run(raw, wants_usage=True)
    assert chunks == [
        chunk({"role": "assistant", "content": ""}, id="msg_01Think"),
        chunk(
            {
                "reasoning_content": "Let me solve this step by step:\n\n1. First break down 27 * 453"
            },
            id="msg_01Think",
        ),
        chunk({"reasoning_content": "\n2. 453 = 400 + 50 + 3"}, id="msg_01Think"),
        chunk({"content": "27 * 453 = 12,231"}, id="msg_01Think"),
        chunk({}, "stop", id="msg_01Think"),
        # No usage in this example's events: the estimate (one token per delta) is what is known.
        {**chunk({}, id="msg_01Think"), "choices": [], "usage": usage(0, 3)},
        "[DONE]",
    ]
    assert state.usage == {**usage(0, 3), "estimated": True}


def test_stream_usage_so_far_is_kept_when_the_client_leaves_early() -> None:
    _, state = run(sse(*BASIC), cut=5)
    assert state.usage == {**usage(25, 2), "estimated": True}
    assert not state.done


def test_stream_error_event_mid_stream_becomes_an_openai_error_event_without_done() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    raw = sse(*BASIC[:4], error, *BASIC[4:])
    chunks, state = run(raw)
    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        {
            "error": {
                "message": "Overloaded",
                "type": "service_unavailable_error",
                "param": None,
                "code": "overloaded",
            }
        },
    ]
    assert state.done
    assert am.finish_stream(state, []) == b""


def test_stream_error_event_of_other_types_maps_like_http_errors() -> None:
    state = am.new_stream_state("claude-pub", False)
    error = {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}
    assert decode(am.from_upstream_events(sse(error), state)) == [
        {
            "error": {
                "message": "Internal server error",
                "type": "upstream_error",
                "param": None,
                "code": "upstream_error",
            }
        }
    ]


TRUNCATED = {
    "error": {
        "message": "The upstream stream ended before the response was complete.",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_stream_truncated",
    }
}


def test_finish_stream_after_a_cut_is_an_error_event() -> None:
    chunks, state = run(sse(*BASIC), cut=4)
    assert chunks[-1] == chunk({"content": "Hello"})
    # The body ended inside the next event: its half JSON is dropped.
    out = am.finish_stream(state, [b'{"type": "content_block_delta", "index": 0, "del'])
    assert decode(out) == [TRUNCATED]
    assert not state.done


def test_finish_stream_processes_a_complete_unterminated_last_event() -> None:
    _, state = run(sse(*BASIC), cut=7)
    assert decode(am.finish_stream(state, [b'{"type": "message_stop"}'])) == ["[DONE]"]
    assert state.done
    _, state = run(sse(*BASIC), cut=5)
    leftover = [orjson.dumps(BASIC[5])]
    assert decode(am.finish_stream(state, leftover)) == [TRUNCATED]


def test_finish_stream_after_the_finish_reason_ends_normally() -> None:
    _, state = run(sse(*BASIC), wants_usage=True, cut=7)  # message_stop lost
    assert decode(am.finish_stream(state, [])) == [
        {**chunk({}), "choices": [], "usage": usage(25, 15)},
        "[DONE]",
    ]


def test_stream_forced_json_tool_streams_as_content() -> None:
    raw = sse(
        {
            "type": "message_start",
            "message": {"id": "msg_J", "usage": {"input_tokens": 9, "output_tokens": 1}},
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_J",
                "name": am.JSON_TOOL,
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"answer": '},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '"yes"}'},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 12},
        },
        {"type": "message_stop"},
    )
    chunks, _ = run(raw)
    assert chunks == [
        chunk({"role": "assistant", "content": ""}, id="msg_J"),
        chunk({"content": '{"answer": '}, id="msg_J"),
        chunk({"content": '"yes"}'}, id="msg_J"),
        chunk({}, "stop", id="msg_J"),
        "[DONE]",
    ]


def test_stream_tool_without_input_fragments_gets_empty_object_arguments() -> None:
    raw = sse(
        {
            "type": "message_start",
            "message": {"id": "msg_T", "usage": {"input_tokens": 3, "output_tokens": 1}},
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_N", "name": "now", "input": {}},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "redacted_thinking", "data": "x"},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 5},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 6},
        },
        {"type": "message_stop"},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "late"},
        },
    )
    chunks, state = run(raw)
    call = {
        "index": 0,
        "id": "toolu_N",
        "type": "function",
        "function": {"name": "now", "arguments": ""},
    }
    assert chunks == [
        chunk({"role": "assistant", "content": ""}, id="msg_T"),
        chunk({"tool_calls": [call]}, id="msg_T"),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, id="msg_T"),
        chunk({}, "tool_calls", id="msg_T"),
        "[DONE]",
    ]
    assert state.usage == usage(3, 6)


def test_stream_message_stop_without_message_delta_still_sends_a_finish_reason() -> None:
    chunks, _ = run(sse(BASIC[0], BASIC[1], BASIC[3], {"type": "message_stop"}))
    assert chunks[-2:] == [chunk({}, "stop"), "[DONE]"]


def test_stream_ignores_non_json_data() -> None:
    state = am.new_stream_state("claude-pub", False)
    assert am.from_upstream_events(b"data: not json\n\ndata: [1]\n\n", state) == b""
    assert state.chunks == 2


# --- errors ---------------------------------------------------------------------------------


def anthropic_error(etype: str, message: str) -> bytes:
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": etype, "message": message},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
        }
    )


def body(message: str, etype: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


@pytest.mark.parametrize(
    ("status", "etype", "message", "expected_status", "expected"),
    [
        (
            400,
            "invalid_request_error",
            "messages: roles must alternate",
            400,
            body("messages: roles must alternate", "invalid_request_error", None),
        ),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
            400,
            body(
                "prompt is too long: 210000 tokens > 200000 maximum",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
        ),
        (
            401,
            "authentication_error",
            "invalid x-api-key",
            502,
            body(
                "The upstream provider refused the gateway's credentials (HTTP 401).",
                "upstream_error",
                "upstream_auth_failed",
            ),
        ),
        (
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
            502,
            body(
                "The upstream provider refused the gateway's credentials (HTTP 403).",
                "upstream_error",
                "upstream_auth_failed",
            ),
        ),
        (
            404,
            "not_found_error",
            "model: claude-nope",
            404,
            body("model: claude-nope", "invalid_request_error", "model_not_found", "model"),
        ),
        (
            404,
            "not_found_error",
            "The requested resource could not be found.",
            404,
            body("The requested resource could not be found.", "not_found_error", None),
        ),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            413,
            body(
                "Request exceeds the maximum allowed number of bytes.",
                "invalid_request_error",
                "request_too_large",
            ),
        ),
        (
            500,
            "api_error",
            "Internal server error",
            502,
            body("Internal server error", "upstream_error", "upstream_error"),
        ),
        (
            529,
            "overloaded_error",
            "Overloaded",
            503,
            body("Overloaded", "service_unavailable_error", "overloaded"),
        ),
    ],
)
def test_error_bodies_map_to_gateway_errors(
    status: int, etype: str, message: str, expected_status: int, expected: dict[str, Any]
) -> None:
    err = am.from_upstream_error(status, anthropic_error(etype, message), {})
    assert (err.status, err.body(), err.headers) == (expected_status, expected, {})


def test_error_rate_limit_keeps_retry_after() -> None:
    raw = anthropic_error(
        "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
    )
    err = am.from_upstream_error(429, raw, {"retry-after": "7", "request-id": "req_1"})
    assert (err.status, err.body(), err.headers) == (
        429,
        body(
            "Number of request tokens has exceeded your per-minute rate limit",
            "rate_limit_error",
            None,
        ),
        {"Retry-After": "7"},
    )
    overloaded = am.from_upstream_error(
        529, anthropic_error("overloaded_error", ""), {"Retry-After": "3"}
    )
    assert (overloaded.status, overloaded.message, overloaded.headers) == (
        503,
        "The upstream provider is overloaded.",
        {"Retry-After": "3"},
    )


def test_error_with_the_clients_own_key_stays_an_auth_error() -> None:
    err = am.from_upstream_error(
        401, anthropic_error("authentication_error", "invalid x-api-key"), {}, True
    )
    assert (err.status, err.body()) == (
        401,
        body("invalid x-api-key", "authentication_error", "invalid_api_key"),
    )


def test_error_text_is_redacted_and_exact_status_kept() -> None:
    raw = anthropic_error(
        "invalid_request_error", "bad key sk-ant-api03-SECRETSECRET and hunter2hunter2"
    )
    err = am.from_upstream_error(418, raw, {}, exact_status=True, secrets=(b"hunter2hunter2",))
    assert (err.status, err.message) == (418, "bad key sk-*** and ***")
    plain = am.from_upstream_error(502, b"<html>Bad Gateway</html>", {})
    assert (plain.status, plain.message) == (502, "<html>Bad Gateway</html>")


def test_request_edge_parts_tool_cache_control_and_named_choice_with_json() -> None:
    parts = [{"type": "text", "text": ""}, {"type": "text", "text": "x"}]
    cached = {**WEATHER, "cache_control": {"type": "ephemeral"}}
    named = {"type": "function", "function": {"name": "get_weather"}}
    rf = {"type": "json_object"}
    out = up(
        req(
            messages=[{"role": "user", "content": parts}],
            tools=[cached],
            tool_choice=named,
            response_format=rf,
        )
    )
    assert out["messages"] == [{"role": "user", "content": "x"}]
    assert out["tools"][0] == {**WEATHER_TOOL, "cache_control": {"type": "ephemeral"}}
    assert out["tool_choice"] == {"type": "tool", "name": "get_weather"}


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "image_url", "image_url": {}}],
        [{"type": "file", "file": {"file_id": "file-abc"}}],
    ],
)
def test_request_image_or_file_without_data_is_a_400(content: list[dict[str, Any]]) -> None:
    with pytest.raises(E.InvalidRequestError) as e:
        up(req(messages=[{"role": "user", "content": content}]))
    assert e.value.param == "messages[0].content[0]"


def test_request_tool_call_arguments_that_are_not_json_are_a_400() -> None:
    call = {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
    with pytest.raises(E.InvalidRequestError) as e:
        up(req(messages=[*USER, {"role": "assistant", "tool_calls": [call]}]))
    assert e.value.param == "messages[1].tool_calls[0].function.arguments"


def test_stream_tool_block_that_starts_with_its_input_sends_it_as_arguments() -> None:
    raw = sse(
        {"type": "message_start", "message": {"id": "msg_I", "usage": {"input_tokens": 1}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_I", "name": "f", "input": {"a": 1}},
        },
        {"type": "content_block_stop", "index": 0},
    )
    chunks, _ = run(raw)
    call = {
        "index": 0,
        "id": "toolu_I",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a":1}'},
    }
    assert chunks[1:] == [chunk({"tool_calls": [call]}, id="msg_I")]


def test_error_body_that_is_not_anthropic_shaped_maps_by_status() -> None:
    err = am.from_upstream_error(503, b'{"detail": "busy"}', {})
    assert (err.status, err.body()) == (503, body("busy", "service_unavailable_error", None))
