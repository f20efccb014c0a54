"""/v1/messages inbound translator: Anthropic requests in, OpenAI chat upstream, Anthropic out.

Streams are checked twice: event by event, and by handing the SSE bytes to the official
`anthropic` SDK's own `client.messages.stream(...)` accumulator (over an in-memory transport),
which is the authority on what an Anthropic client accepts. Non-streaming answers are checked
with `anthropic.types.Message.model_validate`.

Sources: https://docs.anthropic.com/en/api/messages, .../build-with-claude/streaming,
.../agents-and-tools/tool-use/implement-tool-use, .../api/errors; OpenAI chunk shapes as sent by
api.openai.com with stream_options.include_usage (finish_reason chunk, then a usage-only chunk).
"""

from __future__ import annotations

import copy
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import Message

from llm_proxy import errors as E
from llm_proxy.formats import anthropic_inbound as ai

MODEL = "claude-sonnet-4-5"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["location"],
}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": WEATHER_SCHEMA,
}


def base(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, Claude"}],
    }
    body.update(kw)
    return body


# --- validate -------------------------------------------------------------------------------


def test_validate_returns_the_body() -> None:
    body = base(
        system=[{"type": "text", "text": "Be terse."}],
        stream=True,
        temperature=0.5,
        top_p=1,
        top_k=0,
        stop_sequences=["END"],
        tools=[WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        metadata={"user_id": "u-1"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        max_tokens=2048,
    )
    assert ai.validate(body) is body


def test_validate_accepts_an_empty_final_assistant_prefill() -> None:
    body = base(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}])
    assert ai.validate(body) is body


BAD = [
    # (change to the base body, param, code)
    ({"model": None}, "model", "missing_required_parameter"),
    ({"model": 5}, "model", "invalid_type"),
    ({"model": ""}, "model", "invalid_value"),
    ({"model": "m" * 257}, "model", "invalid_value"),
    ({"max_tokens": None}, "max_tokens", "missing_required_parameter"),
    ({"max_tokens": 0}, "max_tokens", "invalid_value"),
    ({"max_tokens": "10"}, "max_tokens", "invalid_type"),
    ({"max_tokens": True}, "max_tokens", "invalid_type"),
    ({"max_tokens": 1.5}, "max_tokens", "invalid_type"),
    ({"messages": None}, "messages", "missing_required_parameter"),
    ({"messages": []}, "messages", "invalid_value"),
    ({"messages": "hi"}, "messages", "invalid_type"),
    ({"messages": ["hi"]}, "messages[0]", "invalid_type"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role", "missing_required_parameter"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content", "invalid_value"),
    ({"messages": [{"role": "user", "content": []}]}, "messages[0].content", "invalid_value"),
    ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content", "invalid_type"),
    ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages[0].content[0]", "invalid_type"),
    (
        {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
        "messages[0].content[0].type",
        "missing_required_parameter",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": 3}]}]},
        "messages[0].content[0].type",
        "invalid_type",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
        "messages[0].content[0].text",
        "invalid_value",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "image"}]}]},
        "messages[0].content[0].source",
        "missing_required_parameter",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url"}}]}]},
        "messages[0].content[0].source.url",
        "missing_required_parameter",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]},
            ]
        },
        "messages[1].content[0].input",
        "missing_required_parameter",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
        "messages[0].content[0].tool_use_id",
        "missing_required_parameter",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{}]}],
                }
            ]
        },
        "messages[0].content[0].content[0].type",
        "missing_required_parameter",
    ),
    ({"system": 5}, "system", "invalid_type"),
    ({"system": [{"type": "image", "text": "x"}]}, "system[0].type", "invalid_value"),
    ({"system": [{"type": "text"}]}, "system[0].text", "missing_required_parameter"),
    ({"stream": "yes"}, "stream", "invalid_type"),
    ({"temperature": 1.5}, "temperature", "invalid_value"),
    ({"temperature": "hot"}, "temperature", "invalid_type"),
    ({"top_p": -0.1}, "top_p", "invalid_value"),
    ({"top_k": -1}, "top_k", "invalid_value"),
    ({"top_k": 2.5}, "top_k", "invalid_type"),
    ({"stop_sequences": "END"}, "stop_sequences", "invalid_type"),
    ({"stop_sequences": ["a", 1]}, "stop_sequences[1]", "invalid_type"),
    ({"tools": {"name": "x"}}, "tools", "invalid_type"),
    ({"tools": [{"input_schema": {}}]}, "tools[0].name", "missing_required_parameter"),
    ({"tools": [{"name": "f"}]}, "tools[0].input_schema", "missing_required_parameter"),
    ({"tools": [{"name": "", "input_schema": {}}]}, "tools[0].name", "invalid_value"),
    ({"tools": [{"name": "f", "input_schema": []}]}, "tools[0].input_schema", "invalid_type"),
    (
        {"tools": [{"type": "custom", "name": "f"}]},
        "tools[0].input_schema",
        "missing_required_parameter",
    ),
    ({"tool_choice": "auto"}, "tool_choice", "invalid_type"),
    ({"tool_choice": {"type": "required"}}, "tool_choice.type", "invalid_value"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.name", "missing_required_parameter"),
    (
        {"tool_choice": {"type": "auto", "disable_parallel_tool_use": "yes"}},
        "tool_choice.disable_parallel_tool_use",
        "invalid_type",
    ),
    ({"metadata": "u"}, "metadata", "invalid_type"),
    ({"metadata": {"user_id": 5}}, "metadata.user_id", "invalid_type"),
    ({"thinking": True}, "thinking", "invalid_type"),
    ({"thinking": {"type": "on"}}, "thinking.type", "invalid_value"),
    ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens", "missing_required_parameter"),
    (
        {"thinking": {"type": "enabled", "budget_tokens": 1023}},
        "thinking.budget_tokens",
        "invalid_value",
    ),
    (
        {"thinking": {"type": "enabled", "budget_tokens": 2048}},  # not below max_tokens=1024
        "thinking.budget_tokens",
        "invalid_value",
    ),
]


@pytest.mark.parametrize(("change", "param", "code"), BAD)
def test_validate_names_the_offending_param(change: dict[str, Any], param: str, code: str) -> None:
    body = base()
    for key, value in change.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    with pytest.raises(E.InvalidRequestError) as info:
        ai.validate(body)
    assert (info.value.param, info.value.code) == (param, code)
    assert info.value.status == 400
    assert param in info.value.message or param == "thinking.budget_tokens"


def test_validate_refuses_a_non_object_body() -> None:
    with pytest.raises(E.InvalidRequestError) as info:
        ai.validate([1, 2])
    assert info.value.code == "invalid_type"


# --- to_chat --------------------------------------------------------------------------------


def test_to_chat_multi_turn_tool_conversation() -> None:
    body = base(
        system="You are a weather bot.",
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "What's the weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_02",
                        "name": "get_weather",
                        "input": {"location": "Rome", "unit": "celsius"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "15 C, cloudy"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_02",
                        "content": [
                            {"type": "text", "text": "Service down"},
                            {"type": "text", "text": "retry later"},
                        ],
                        "is_error": True,
                    },
                    {"type": "text", "text": "Thanks, summarize please."},
                ],
            },
        ],
    )
    out = ai.to_chat(ai.validate(body))
    assert out["model"] == MODEL
    assert out["max_tokens"] == 1024
    assert out["messages"] == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "What's the weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                },
                {
                    "id": "toolu_02",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"location":"Rome","unit":"celsius"}',
                    },
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "15 C, cloudy"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "Error: Service down\nretry later"},
        {"role": "user", "content": "Thanks, summarize please."},
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "parameters": WEATHER_SCHEMA,
            },
        }
    ]
    assert "tool_choice" not in out and "stream" not in out


def test_to_chat_tool_result_text_placed_after_the_tool_messages() -> None:
    body = base(
        messages=[
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here you go:"},
                    {"type": "tool_result", "tool_use_id": "t1"},
                ],
            },
        ]
    )
    out = ai.to_chat(body)
    assert out["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": ""},
        {"role": "user", "content": "Here you go:"},
    ]


def test_to_chat_images_and_text_parts() -> None:
    body = base(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                    {
                        "type": "text",
                        "text": "Compare these.",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            }
        ]
    )
    assert ai.to_chat(body)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                {"type": "text", "text": "Compare these."},
            ],
        }
    ]


def test_to_chat_single_text_block_collapses_and_system_blocks_join() -> None:
    body = base(
        system=[{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    )
    assert ai.to_chat(body)["messages"] == [
        {"role": "system", "content": "One.\n\nTwo."},
        {"role": "user", "content": "Hi"},
    ]


def test_to_chat_tool_result_image_moves_to_a_user_message() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    body = base(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "screenshot:"}, image],
                    }
                ],
            }
        ]
    )
    assert ai.to_chat(body)["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "screenshot:"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
            ],
        },
    ]


def test_to_chat_documents() -> None:
    pdf = {
        "type": "document",
        "title": "report.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
    }
    text_doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "Notes"},
    }
    body = base(messages=[{"role": "user", "content": [pdf, text_doc]}])
    assert ai.to_chat(body)["messages"][0]["content"] == [
        {
            "type": "file",
            "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
        },
        {"type": "text", "text": "Notes"},
    ]
    url_pdf = {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}}
    with pytest.raises(E.InvalidRequestError) as info:
        ai.to_chat(base(messages=[{"role": "user", "content": [url_pdf]}]))
    assert (info.value.param, info.value.code) == (
        "messages[0].content[0].source",
        "unsupported_content",
    )


def test_to_chat_refuses_unknown_blocks() -> None:
    body = base(messages=[{"role": "user", "content": [{"type": "search_result", "x": 1}]}])
    with pytest.raises(E.InvalidRequestError) as info:
        ai.to_chat(ai.validate(body))
    assert info.value.param == "messages[0].content[0].type"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_to_chat_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    out = ai.to_chat(base(tools=[WEATHER_TOOL], tool_choice=choice))
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_to_chat_disable_parallel_tool_use() -> None:
    choice = {"type": "any", "disable_parallel_tool_use": True}
    out = ai.to_chat(base(tools=[WEATHER_TOOL], tool_choice=choice))
    assert (out["tool_choice"], out["parallel_tool_calls"]) == ("required", False)


def test_to_chat_tool_choice_without_tools_is_dropped() -> None:
    out = ai.to_chat(base(tool_choice={"type": "any"}))
    assert "tool_choice" not in out and "tools" not in out


def test_to_chat_refuses_server_tools() -> None:
    body = base(tools=[WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search"}])
    with pytest.raises(E.InvalidRequestError) as info:
        ai.to_chat(ai.validate(body))
    assert (info.value.param, info.value.code) == ("tools[1]", "unsupported_tool")


def test_to_chat_sampling_stop_user_stream() -> None:
    body = base(
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop_sequences=["\n\nHuman:", "END"],
        metadata={"user_id": "user-42"},
        stream=True,
    )
    out = ai.to_chat(body)
    assert {k: out[k] for k in ("temperature", "top_p", "top_k", "stop", "user")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["\n\nHuman:", "END"],
        "user": "user-42",
    }
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 4095}, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, "medium"),
        ({"type": "enabled", "budget_tokens": 16383}, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, "high"),
        ({"type": "disabled"}, None),
        ({"type": "adaptive"}, None),
    ],
)
def test_to_chat_thinking_effort(thinking: dict[str, Any], effort: str | None) -> None:
    body = ai.validate(base(max_tokens=32000, thinking=thinking))
    assert ai.to_chat(body).get("reasoning_effort") == effort


def test_to_chat_does_not_mutate_the_body() -> None:
    body = base(system=[{"type": "text", "text": "S"}], tools=[WEATHER_TOOL])
    before = copy.deepcopy(body)
    ai.to_chat(body)
    assert body == before


# --- from_chat ------------------------------------------------------------------------------


def completion(
    message: dict[str, Any], finish: str | None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage
        or {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        },
    }


def test_from_chat_text() -> None:
    doc = completion({"role": "assistant", "content": "Hello there!", "refusal": None}, "stop")
    msg = ai.from_chat(doc, MODEL)
    assert msg == {
        "id": "msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello there!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 19,
            "output_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    parsed = Message.model_validate(msg)
    assert parsed.content[0].type == "text" and parsed.content[0].text == "Hello there!"


def test_from_chat_tool_calls_with_reasoning_and_cached_usage() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "reasoning_content": "The user wants weather.",
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
            },
            {"type": "function", "function": {"name": "get_time", "arguments": ""}},
            {"id": "call_bad", "type": "function", "function": {"name": "f", "arguments": "{oops"}},
        ],
    }
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 40,
        "total_tokens": 1240,
        "prompt_tokens_details": {"cached_tokens": 1024},
    }
    msg = ai.from_chat(completion(message, "tool_calls", usage), MODEL)
    assert msg["content"] == [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": ""},
        {
            "type": "tool_use",
            "id": "call_abc",
            "name": "get_weather",
            "input": {"location": "Paris"},
        },
        {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}},
        {"type": "tool_use", "id": "call_bad", "name": "f", "input": {"_raw_arguments": "{oops"}},
    ]
    assert msg["stop_reason"] == "tool_use"
    assert msg["usage"] == {
        "input_tokens": 176,
        "output_tokens": 40,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1024,
    }
    parsed = Message.model_validate(msg)
    assert [b.type for b in parsed.content] == ["thinking", "tool_use", "tool_use", "tool_use"]


def test_from_chat_text_and_tool_call_with_stop_finish_is_tool_use() -> None:
    message = {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    msg = ai.from_chat(completion(message, "stop"), MODEL)
    assert [b["type"] for b in msg["content"]] == ["text", "tool_use"]
    assert msg["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_from_chat_stop_reasons(finish: str | None, stop_reason: str) -> None:
    msg = ai.from_chat(completion({"role": "assistant", "content": "Once upon a"}, finish), MODEL)
    assert msg["stop_reason"] == stop_reason
    Message.model_validate(msg)


def test_from_chat_length_and_reasoning_field() -> None:
    message = {"role": "assistant", "content": "", "reasoning": "thinking hard"}
    msg = ai.from_chat(completion(message, "length"), MODEL)
    assert msg["content"] == [{"type": "thinking", "thinking": "thinking hard", "signature": ""}]
    assert msg["stop_reason"] == "max_tokens"


def test_from_chat_refusal_and_empty() -> None:
    msg = ai.from_chat(
        completion({"role": "assistant", "content": None, "refusal": "I can't."}, "stop"), MODEL
    )
    assert msg["content"] == [{"type": "text", "text": "I can't."}]
    assert msg["stop_reason"] == "refusal"
    empty = ai.from_chat({"choices": []}, MODEL)
    assert empty["content"] == [] and empty["stop_reason"] == "end_turn"
    assert empty["id"].startswith("msg_")
    Message.model_validate(empty)


def test_from_chat_uses_choice_zero_only() -> None:
    doc = completion({"role": "assistant", "content": "first"}, "stop")
    doc["choices"].insert(0, {"index": 1, "message": {"role": "assistant", "content": "second"}})
    assert ai.from_chat(doc, MODEL)["content"] == [{"type": "text", "text": "first"}]


# --- streams --------------------------------------------------------------------------------

CHAT_ID = "chatcmpl-AyPq3Ezr2KYtFYz8Jb1dDpf6ls9Pa"


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": 1739227745,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_4691090a87",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def usage_chunk(prompt: int = 12, completion: int = 7, cached: int = 0) -> dict[str, Any]:
    return {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": 1739227745,
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


ROLE = chunk({"role": "assistant", "content": "", "refusal": None})


def tool_start(index: int, id: str, name: str) -> dict[str, Any]:
    call = {
        "index": index,
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    return chunk({"tool_calls": [call]})


def tool_args(index: int, text: str) -> dict[str, Any]:
    return chunk({"tool_calls": [{"index": index, "function": {"arguments": text}}]})


def run(chunks: list[dict[str, Any]], **kw: Any) -> tuple[bytes, ai.StreamTranslator]:
    t = ai.StreamTranslator(MODEL, **kw)
    out = b"".join(t.feed(c) for c in chunks) + t.finish()
    return out, t


def events(sse: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse SSE bytes strictly: every event is `event: X` + `data: {json with type X}`."""
    out = []
    assert sse.endswith(b"\n\n")
    for frame in sse[:-2].split(b"\n\n"):
        head, data = frame.split(b"\n")
        assert head.startswith(b"event: ") and data.startswith(b"data: ")
        name, doc = head[7:].decode(), orjson.loads(data[6:])
        assert doc["type"] == name
        out.append((name, doc))
    return out


def kinds(sse: bytes) -> list[str]:
    return [name for name, _ in events(sse)]


def sdk_stream(sse: bytes) -> tuple[list[str], Any]:
    """Feed the bytes to the official SDK's streaming helper: (text_stream pieces, final message)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/messages"
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = anthropic.Anthropic(
        base_url="http://gateway.test", api_key="x", max_retries=0, http_client=http
    )
    with client.messages.stream(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    http.close()
    return texts, final


def test_stream_text() -> None:
    chunks = [
        ROLE,
        chunk({"content": "Hello"}),
        chunk({"content": " world"}),
        chunk({}, "stop"),
        usage_chunk(),
    ]
    sse, t = run(chunks)
    evs = events(sse)
    assert kinds(sse) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = evs[0][1]["message"]
    assert start["id"] == "msg_AyPq3Ezr2KYtFYz8Jb1dDpf6ls9Pa"
    assert (start["model"], start["content"], start["stop_reason"]) == (MODEL, [], None)
    assert start["usage"]["output_tokens"] == 0
    assert evs[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert evs[2][1]["delta"] == {"type": "text_delta", "text": "Hello"}
    assert evs[5][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 7, "input_tokens": 12},
    }
    assert t.usage is not None
    assert (t.usage["prompt_tokens"], t.usage["completion_tokens"], t.usage["total_tokens"]) == (
        12,
        7,
        19,
    )

    texts, final = sdk_stream(sse)
    assert texts == ["Hello", " world"]
    assert final.id == "msg_AyPq3Ezr2KYtFYz8Jb1dDpf6ls9Pa"
    assert [(b.type, b.text) for b in final.content] == [("text", "Hello world")]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 7)


def test_stream_message_delta_waits_for_the_usage_chunk() -> None:
    t = ai.StreamTranslator(MODEL, message_id="msg_fixed")
    first = t.feed(ROLE)
    assert kinds(first) == ["message_start"]
    assert events(first)[0][1]["message"]["id"] == "msg_fixed"
    assert kinds(t.feed(chunk({"content": "Hi"}))) == ["content_block_start", "content_block_delta"]
    assert kinds(t.feed(chunk({}, "length"))) == ["content_block_stop"]  # message_delta held
    assert t.feed({"id": CHAT_ID, "choices": []}) == b""  # no usage: ignored
    end = t.feed(usage_chunk(prompt=30, completion=4, cached=10))
    assert kinds(end) == ["message_delta", "message_stop"]
    assert events(end)[0][1]["usage"] == {
        "output_tokens": 4,
        "input_tokens": 20,
        "cache_read_input_tokens": 10,
    }
    assert events(end)[0][1]["delta"]["stop_reason"] == "max_tokens"
    assert t.finish() == b""  # idempotent: nothing more is owed
    assert t.finish() == b""
    assert t.feed(chunk({"content": "late"})) == b""


def test_stream_tool_call_arguments_over_three_chunks() -> None:
    chunks = [
        chunk({"role": "assistant", "content": None}),
        tool_start(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather"),
        tool_args(0, '{"loc'),
        tool_args(0, 'ation": "Par'),
        tool_args(0, 'is, France"}'),
        chunk({}, "tool_calls"),
        usage_chunk(prompt=80, completion=17),
    ]
    sse, _ = run(chunks)
    evs = events(sse)
    assert kinds(sse) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert evs[1][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        "name": "get_weather",
        "input": {},
    }
    assert [e[1]["delta"] for e in evs[2:5]] == [
        {"type": "input_json_delta", "partial_json": '{"loc'},
        {"type": "input_json_delta", "partial_json": 'ation": "Par'},
        {"type": "input_json_delta", "partial_json": 'is, France"}'},
    ]
    texts, final = sdk_stream(sse)
    assert texts == []
    assert len(final.content) == 1
    block = final.content[0]
    assert (block.type, block.id, block.name) == (
        "tool_use",
        "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        "get_weather",
    )
    assert block.input == {"location": "Paris, France"}
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (80, 17)


def test_stream_text_then_two_parallel_tool_calls() -> None:
    chunks = [
        ROLE,
        chunk({"content": "Let me check "}),
        chunk({"content": "both."}),
        tool_start(0, "call_1", "get_weather"),
        tool_args(0, '{"location":'),
        tool_args(0, ' "Paris"}'),
        tool_start(1, "call_2", "get_weather"),
        tool_args(1, '{"location": "Rome"}'),
        chunk({}, "tool_calls"),
        usage_chunk(),
    ]
    sse, _ = run(chunks)
    evs = events(sse)
    starts = [
        (e["index"], e["content_block"]["type"]) for n, e in evs if n == "content_block_start"
    ]
    stops = [e["index"] for n, e in evs if n == "content_block_stop"]
    assert starts == [(0, "text"), (1, "tool_use"), (2, "tool_use")]
    assert stops == [0, 1, 2]
    # Each block is stopped before the next one starts.
    order = [
        (n, e.get("index"))
        for n, e in evs
        if n.startswith("content_block_") and n != "content_block_delta"
    ]
    assert order == [
        ("content_block_start", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_stop", 2),
    ]
    texts, final = sdk_stream(sse)
    assert "".join(texts) == "Let me check both."
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[0].text == "Let me check both."
    assert [(b.id, b.input) for b in final.content[1:]] == [
        ("call_1", {"location": "Paris"}),
        ("call_2", {"location": "Rome"}),
    ]
    assert final.stop_reason == "tool_use"


def test_stream_new_id_on_same_index_starts_a_new_block() -> None:
    # Some OpenAI-compatible servers send every call at index 0, told apart by id.
    chunks = [
        ROLE,
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"n": 1}'}}
                ]
            }
        ),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "b", "function": {"name": "g", "arguments": '{"n": 2}'}}
                ]
            }
        ),
        chunk({}, "stop"),  # said "stop" despite the tool calls
    ]
    sse, _ = run(chunks)
    _, final = sdk_stream(sse)
    assert [(b.id, b.name, b.input) for b in final.content] == [
        ("a", "f", {"n": 1}),
        ("b", "g", {"n": 2}),
    ]
    assert final.stop_reason == "tool_use"


def test_stream_tool_call_without_id_and_without_arguments() -> None:
    chunks = [
        ROLE,
        chunk({"tool_calls": [{"index": 0, "function": {"name": "ping"}}]}),
        chunk({}, "tool_calls"),
    ]
    sse, _ = run(chunks)
    _, final = sdk_stream(sse)
    assert [(b.id, b.name, b.input) for b in final.content] == [("toolu_0", "ping", {})]


def test_stream_reasoning_then_text() -> None:
    chunks = [
        ROLE,
        chunk({"reasoning_content": "Let me think"}),
        chunk({"reasoning": " carefully."}),
        chunk({"content": "42"}),
        chunk({}, "stop"),
        usage_chunk(),
    ]
    sse, _ = run(chunks)
    evs = events(sse)
    assert evs[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert evs[2][1]["delta"] == {"type": "thinking_delta", "thinking": "Let me think"}
    texts, final = sdk_stream(sse)
    assert texts == ["42"]
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Let me think carefully."
    assert final.content[1].text == "42"


def test_stream_finish_without_usage_chunk() -> None:
    t = ai.StreamTranslator(MODEL)
    sse = t.feed(ROLE) + t.feed(chunk({"content": "Hi"})) + t.feed(chunk({}, "stop"))
    assert kinds(sse)[-1] == "content_block_stop"
    assert t.usage is None
    sse += t.finish()
    assert kinds(sse)[-2:] == ["message_delta", "message_stop"]
    assert events(sse)[-2][1]["usage"] == {"output_tokens": 0, "input_tokens": 0}
    _, final = sdk_stream(sse)
    assert final.content[0].text == "Hi" and final.stop_reason == "end_turn"


def test_stream_usage_in_the_finish_chunk_ends_at_once() -> None:
    last = chunk({}, "stop")
    last["usage"] = usage_chunk(prompt=5, completion=2)["usage"]
    t = ai.StreamTranslator(MODEL)
    sse = t.feed(ROLE) + t.feed(chunk({"content": "ok"})) + t.feed(last)
    assert kinds(sse)[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert t.finish() == b""


def test_stream_cut_off_upstream_still_closes_blocks() -> None:
    t = ai.StreamTranslator(MODEL)
    sse = (
        t.feed(ROLE)
        + t.feed(tool_start(0, "c1", "f"))
        + t.feed(tool_args(0, '{"a": 1}'))
        + t.finish()
    )
    assert kinds(sse)[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    _, final = sdk_stream(sse)
    assert final.content[0].input == {"a": 1}
    assert final.stop_reason == "tool_use"


def test_stream_finish_without_any_chunk_is_a_valid_minimal_stream() -> None:
    t = ai.StreamTranslator(MODEL, message_id="msg_empty")
    sse = t.finish()
    assert kinds(sse) == ["message_start", "message_delta", "message_stop"]
    assert t.finish() == b""
    texts, final = sdk_stream(sse)
    assert texts == [] and final.content == [] and final.id == "msg_empty"
    assert final.stop_reason == "end_turn"


def test_stream_other_choices_are_ignored() -> None:
    other = chunk({"content": "other"})
    other["choices"][0]["index"] = 1
    sse, _ = run([ROLE, other, chunk({"content": "mine"}), chunk({}, "stop")])
    _, final = sdk_stream(sse)
    assert [b.text for b in final.content] == ["mine"]


def test_stream_error_event_is_raised_by_the_sdk() -> None:
    t = ai.StreamTranslator(MODEL)
    sse = t.feed(ROLE) + t.feed(chunk({"content": "Hel"}))
    err = E.ServiceUnavailableError("The upstream provider is overloaded.", code="overloaded")
    tail = t.error_event(err)
    assert events(tail) == [
        (
            "error",
            {
                "type": "error",
                "error": {
                    "type": "overloaded_error",
                    "message": "The upstream provider is overloaded.",
                    "param": None,
                    "code": "overloaded",
                },
            },
        )
    ]
    assert t.finish() == b""  # the error ended the stream
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk_stream(sse + tail)
    assert "overloaded" in str(info.value)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "etype"),
    [
        (E.InvalidRequestError("bad", param="messages"), "invalid_request_error"),
        (E.AuthenticationError("no key"), "authentication_error"),
        (E.PermissionDeniedError("nope"), "permission_error"),
        (E.ModelNotFoundError("no model", param="model"), "not_found_error"),
        (E.RequestTooLargeError("big"), "request_too_large"),
        (E.RequestTimeoutError("slow client"), "invalid_request_error"),
        (E.RateLimitError("slow down"), "rate_limit_error"),
        (E.GatewayError("boom"), "api_error"),
        (E.UpstreamError("bad gateway"), "api_error"),
        (E.ServiceUnavailableError("busy"), "overloaded_error"),
        (E.GatewayError("overloaded", status=529), "overloaded_error"),
        (E.UpstreamTimeoutError("timeout"), "timeout_error"),
    ],
)
def test_error_body(err: E.GatewayError, etype: str) -> None:
    doc = orjson.loads(ai.error_body(err))
    assert doc == {
        "type": "error",
        "error": {"type": etype, "message": err.message, "param": err.param, "code": err.code},
    }


def test_error_body_parses_as_sdk_error_response() -> None:
    from anthropic.types import ErrorResponse

    raw = ai.error_body(E.InvalidRequestError("max_tokens: Field required.", param="max_tokens"))
    parsed = ErrorResponse.model_validate(orjson.loads(raw))
    assert parsed.error.type == "invalid_request_error"


# --- count_tokens ---------------------------------------------------------------------------


def o200k(text: str) -> int:
    import tiktoken

    return len(tiktoken.get_encoding("o200k_base").encode(text))


def test_count_tokens_simple() -> None:
    body = base(system="You are terse.")
    assert (
        ai.count_tokens_estimate(body) == o200k("You are terse.") + o200k("Hello, Claude") + 3 + 3
    )


def test_count_tokens_tools_and_tool_turns() -> None:
    body = base(
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "15 C"}],
                    },
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                ],
            },
        ],
    )
    texts = [
        "Weather in Paris?",
        "Checking.",
        "get_weather",
        '{"location":"Paris"}',
        "15 C",
        "get_weather",
        WEATHER_TOOL["description"],
        orjson.dumps(WEATHER_SCHEMA).decode(),
    ]
    expected = sum(o200k(t) for t in texts) + 1600 + 3 * 3 + 3 * 1 + 3
    assert ai.count_tokens_estimate(body) == expected


def test_count_tokens_special_token_text_does_not_raise() -> None:
    body = base(messages=[{"role": "user", "content": "<|endoftext|>"}])
    assert ai.count_tokens_estimate(body) > 6


def test_count_tokens_without_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ai, "_counter", lambda: ai._approximate)
    assert (
        ai.count_tokens_estimate(base(messages=[{"role": "user", "content": "abcdefgh"}]))
        == 2 + 3 + 3
    )
