"""/v1/responses over chat completions: Responses requests in, OpenAI chat upstream, Responses out.

Non-streaming answers are checked with `openai.types.responses.Response.model_validate`; every
stream event is validated strictly against the SDK's `ResponseStreamEvent` union, and whole
streams are handed to the official `openai` SDK (over an in-memory transport) through both
`client.responses.stream(...)` (the accumulator) and `client.responses.create(stream=True)`.

Sources: https://platform.openai.com/docs/api-reference/responses (create, object),
https://platform.openai.com/docs/api-reference/responses-streaming; chat chunk shapes as sent by
api.openai.com with stream_options.include_usage (the finish_reason chunk, then a usage-only
chunk with `choices: []`).
"""

from __future__ import annotations

import copy
from typing import Any

import httpx2
import openai
import orjson
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from llm_proxy import errors as E
from llm_proxy.formats import openai_responses as R

MODEL = "gpt-4o-mini"
CREATED = 1_741_290_958
RID = "resp_0123456789abcdef"
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"location": {"type": "string"}},
    "required": ["location"],
    "additionalProperties": False,
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather",
    "parameters": WEATHER_SCHEMA,
}
USAGE = {
    "prompt_tokens": 37,
    "completion_tokens": 11,
    "total_tokens": 48,
    "prompt_tokens_details": {"cached_tokens": 5, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
}
RESPONSES_USAGE = {
    "input_tokens": 37,
    "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 0},
    "output_tokens": 11,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 48,
}
STREAM_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": "Hi", **extra}


# --- validate -------------------------------------------------------------------------------


def test_validate_returns_a_valid_body_unchanged() -> None:
    b = body(
        instructions="Be brief.", max_output_tokens=16, temperature=2, top_p=0, stream=True,
        tools=[WEATHER_TOOL, {"type": "web_search"}], tool_choice={"type": "function", "name": "x"},
        text={"format": {"type": "json_schema", "name": "n", "schema": {}}}, metadata={"k": "v"},
        reasoning={"effort": "low"}, parallel_tool_calls=False,
    )  # fmt: skip
    assert R.validate(b) is b


@pytest.mark.parametrize(
    ("doc", "param", "code"),
    [
        ({"model": MODEL}, "input", "missing_required_parameter"),
        ({"input": "Hi"}, "model", "missing_required_parameter"),
        (body(model=""), "model", "invalid_value"),
        (body(model="m" * 257), "model", "invalid_value"),
        (body(model=3), "model", "invalid_type"),
        (body(input=3), "input", "invalid_type"),
        (body(input=["hi"]), "input[0]", "invalid_type"),
        (body(input=[{"role": "robot", "content": "x"}]), "input[0].role", "invalid_value"),
        (body(input=[{"role": "user"}]), "input[0].content", "missing_required_parameter"),
        (body(input=[{"role": "user", "content": [{"type": "input_text"}]}]),
         "input[0].content[0].text", "missing_required_parameter"),
        (body(input=[{"type": "function_call", "call_id": "c", "name": "f"}]),
         "input[0].arguments", "missing_required_parameter"),
        (body(input=[{"type": "function_call_output", "call_id": "c", "output": 3}]),
         "input[0].output", "invalid_type"),
        (body(instructions=["x"]), "instructions", "invalid_type"),
        (body(stream="yes"), "stream", "invalid_type"),
        (body(max_output_tokens=15), "max_output_tokens", "integer_below_min_value"),
        (body(max_output_tokens=True), "max_output_tokens", "invalid_type"),
        (body(temperature=2.5), "temperature", "invalid_value"),
        (body(top_p=1.1), "top_p", "invalid_value"),
        (body(top_p="1"), "top_p", "invalid_type"),
        (body(tools={}), "tools", "invalid_type"),
        (body(tools=[{"name": "f"}]), "tools[0].type", "missing_required_parameter"),
        (body(tools=[{"type": "function"}]), "tools[0].name", "missing_required_parameter"),
        (body(tools=[{"type": "function", "name": "f", "parameters": []}]),
         "tools[0].parameters", "invalid_type"),
        (body(tool_choice="any"), "tool_choice", "invalid_value"),
        (body(tool_choice={"type": "function"}), "tool_choice.name", "missing_required_parameter"),
        (body(text="json"), "text", "invalid_type"),
        (body(text={"format": {"type": "yaml"}}), "text.format.type", "invalid_value"),
        (body(text={"format": {"type": "json_schema", "name": "n"}}),
         "text.format.schema", "missing_required_parameter"),
        (body(reasoning="high"), "reasoning", "invalid_type"),
        (body(metadata=[]), "metadata", "invalid_type"),
        (body(metadata={"k": 1}), "metadata.k", "invalid_value"),
        (body(parallel_tool_calls="no"), "parallel_tool_calls", "invalid_type"),
        (body(background=True), "background", "unsupported_parameter"),
        (body(prompt={"id": "pmpt_1"}), "prompt", "unsupported_parameter"),
    ],
)  # fmt: skip
def test_validate_names_the_bad_param(doc: Any, param: str, code: str) -> None:
    with pytest.raises(E.InvalidRequestError) as info:
        R.validate(doc)
    assert (info.value.param, info.value.code, info.value.status) == (param, code, 400)


def test_validate_refuses_a_body_that_is_not_an_object() -> None:
    with pytest.raises(E.InvalidRequestError) as info:
        R.validate([body()])
    assert (info.value.param, info.value.code) == (None, "invalid_type")


@pytest.mark.parametrize("name", ["previous_response_id", "conversation"])
def test_validate_refuses_stateful_params_saying_the_gateway_is_stateless(name: str) -> None:
    with pytest.raises(E.InvalidRequestError) as info:
        R.validate(body(**{name: "resp_123"}))
    err = info.value
    assert (err.param, err.code) == (name, "unsupported_parameter")
    assert "stateless" in err.message and "`input`" in err.message


def test_validate_allows_null_stateful_params() -> None:
    assert R.validate(body(previous_response_id=None, conversation=None))


# --- to_chat --------------------------------------------------------------------------------


def test_to_chat_string_input_and_instructions() -> None:
    chat = R.to_chat(body(instructions="Be brief.", max_output_tokens=100, temperature=0.2))
    assert chat == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "max_completion_tokens": 100,
        "temperature": 0.2,
    }


def test_to_chat_multi_item_conversation_with_function_calls() -> None:
    items: list[dict[str, Any]] = [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {
            "type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
        },
        {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "get_weather",
         "arguments": '{"location":"Paris"}', "status": "completed"},
        {"type": "function_call", "call_id": "call_b", "name": "get_weather",
         "arguments": '{"location":"Rome"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
        {"type": "function_call_output", "call_id": "call_b",
         "output": [{"type": "input_text", "text": "21C"}, {"type": "input_text", "text": "sunny"}]},
        {"type": "function_call", "call_id": "call_c", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_c", "output": "n/a"},
    ]  # fmt: skip
    chat = R.to_chat(body(instructions="Be brief.", input=items))
    fn_a = {"name": "get_weather", "arguments": '{"location":"Paris"}'}
    fn_b = {"name": "get_weather", "arguments": '{"location":"Rome"}'}
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": fn_a},
                {"id": "call_b", "type": "function", "function": fn_b},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "21C\nsunny"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_c",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_c", "content": "n/a"},
    ]


def test_to_chat_user_parts_images_and_files() -> None:
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JV"},
        {"type": "input_file", "file_id": "file-1"},
    ]
    chat = R.to_chat(body(input=[{"role": "user", "content": content}]))
    assert chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA", "detail": "auto"},
                },
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JV", "filename": "a.pdf"},
                },
                {"type": "file", "file": {"file_id": "file-1"}},
            ],
        }
    ]


def test_to_chat_moves_tool_output_images_after_the_tool_messages() -> None:
    image = {"type": "input_image", "image_url": "https://x/chart.png"}
    items = [
        {"type": "function_call", "call_id": "c1", "name": "plot", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "plot", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [image]},
        {"type": "function_call_output", "call_id": "c2", "output": "done"},
        {"role": "user", "content": "Explain."},
    ]
    messages = R.to_chat(body(input=items))["messages"]
    assert [m["role"] for m in messages] == ["assistant", "tool", "tool", "user", "user"]
    assert messages[1] == {"role": "tool", "tool_call_id": "c1", "content": ""}
    assert messages[3] == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": "https://x/chart.png", "detail": "auto"}}
        ],
    }


def test_to_chat_function_tools_choice_and_parallel_calls() -> None:
    strict = {**WEATHER_TOOL, "name": "lookup", "strict": True}
    chat = R.to_chat(
        body(tools=[WEATHER_TOOL, strict], tool_choice={"type": "function", "name": "lookup"},
             parallel_tool_calls=False)
    )  # fmt: skip
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather",
                "parameters": WEATHER_SCHEMA,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Get the current weather",
                "parameters": WEATHER_SCHEMA,
                "strict": True,
            },
        },
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert chat["parallel_tool_calls"] is False


@pytest.mark.parametrize("choice", ["none", "auto", "required"])
def test_to_chat_copies_tool_choice_strings(choice: str) -> None:
    assert R.to_chat(body(tools=[WEATHER_TOOL], tool_choice=choice))["tool_choice"] == choice


def test_to_chat_allowed_tools_choice() -> None:
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_weather"}],
    }
    chat = R.to_chat(body(tools=[WEATHER_TOOL], tool_choice=choice))
    assert chat["tool_choice"] == {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        },
    }


def test_to_chat_drops_tool_settings_without_tools_and_drops_metadata() -> None:
    chat = R.to_chat(body(tool_choice="none", parallel_tool_calls=True, metadata={"a": "b"}))
    assert chat == {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(
    "tool", ["web_search", "file_search", "computer_use_preview", "code_interpreter",
             "image_generation", "mcp", "custom"]
)  # fmt: skip
def test_to_chat_refuses_built_in_tools(tool: str) -> None:
    with pytest.raises(E.InvalidRequestError) as info:
        R.to_chat(body(tools=[WEATHER_TOOL, {"type": tool}]))
    assert (info.value.param, info.value.code) == ("tools[1].type", "unsupported_tool")
    assert "OpenAI upstream" in info.value.message


def test_to_chat_refuses_built_in_tool_choice() -> None:
    with pytest.raises(E.InvalidRequestError) as info:
        R.to_chat(body(tools=[WEATHER_TOOL], tool_choice={"type": "file_search"}))
    assert (info.value.param, info.value.code) == ("tool_choice.type", "unsupported_tool")


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "web_search_call", "id": "ws_1", "status": "completed"}, "input[0].type"),
        ({"type": "computer_call", "id": "cu_1", "call_id": "c", "action": {}}, "input[0].type"),
        ({"type": "item_reference", "id": "msg_1"}, "input[0].id"),
        ({"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]},
         "input[0].content[0].file_id"),
        ({"role": "user", "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}]},
         "input[0].content[0].file_url"),
        ({"role": "user", "content": [{"type": "input_audio"}]}, "input[0].content[0].type"),
        ({"role": "system", "content": [{"type": "input_image", "image_url": "https://x"}]},
         "input[0].content[0].type"),
    ],
)  # fmt: skip
def test_to_chat_refuses_untranslatable_input(item: dict[str, Any], param: str) -> None:
    with pytest.raises(E.InvalidRequestError) as info:
        R.to_chat(body(input=[item]))
    assert (info.value.param, info.value.code) == (param, "unsupported_value")


def test_to_chat_refuses_an_input_with_no_messages() -> None:
    with pytest.raises(E.InvalidRequestError) as info:
        R.to_chat(body(input=[{"type": "reasoning", "id": "rs_1", "summary": []}]))
    assert info.value.param == "input"


def test_to_chat_text_format_json_schema() -> None:
    fmt = {"type": "json_schema", "name": "weather", "schema": WEATHER_SCHEMA, "strict": True}
    chat = R.to_chat(body(text={"format": fmt, "verbosity": "low"}))
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True},
    }
    assert chat["verbosity"] == "low"


def test_to_chat_text_format_json_object_and_text() -> None:
    chat = R.to_chat(body(text={"format": {"type": "json_object"}}))
    assert chat["response_format"] == {"type": "json_object"}
    assert "response_format" not in R.to_chat(body(text={"format": {"type": "text"}}))


def test_to_chat_reasoning_effort_stream_and_user() -> None:
    chat = R.to_chat(
        body(reasoning={"effort": "high", "summary": "auto"}, stream=True, user="u-1", top_p=0.5)
    )
    assert chat == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "top_p": 0.5,
        "user": "u-1",
        "reasoning_effort": "high",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_to_chat_joins_system_text_parts_as_blocks() -> None:
    parts = [{"type": "input_text", "text": "Rule one."}, {"type": "input_text", "text": "Two."}]
    messages = R.to_chat(body(input=[{"role": "system", "content": parts}]))["messages"]
    assert messages == [{"role": "system", "content": "Rule one.\n\nTwo."}]


def test_to_chat_assistant_refusal_part() -> None:
    item = {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}
    assert R.to_chat(body(input=[item, {"role": "user", "content": "Why?"}]))["messages"] == [
        {"role": "assistant", "content": "", "refusal": "No."},
        {"role": "user", "content": "Why?"},
    ]


# --- from_chat ------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str = "stop", usage: Any = USAGE) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "refusal": None, **message},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
    }
    if usage is not None:
        doc["usage"] = usage
    return doc


def resp_id(doc: dict[str, Any]) -> str:
    rid = doc["id"]
    assert isinstance(rid, str) and rid.startswith("resp_")
    int(rid[5:], 16)  # hex
    return rid[5:]


def test_from_chat_text_is_the_whole_response_object() -> None:
    request = body(instructions="Be brief.")
    doc = R.from_chat(completion({"content": "Hi there!"}), request, CREATED)
    s = resp_id(doc)
    assert doc == {
        "id": f"resp_{s}", "object": "response", "created_at": CREATED, "status": "completed",
        "background": False, "completed_at": None, "error": None, "incomplete_details": None,
        "instructions": "Be brief.", "max_output_tokens": None, "max_tool_calls": None,
        "model": MODEL,
        "output": [
            {
                "id": f"msg_{s}", "type": "message", "status": "completed", "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Hi there!", "annotations": [], "logprobs": []}
                ],
            }
        ],
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "safety_identifier": None,
        "prompt_cache_key": None, "store": False, "temperature": None,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": None,
        "truncation": "disabled", "usage": RESPONSES_USAGE, "user": None, "metadata": {},
    }  # fmt: skip
    sdk = Response.model_validate(doc)
    assert sdk.output_text == "Hi there!"
    assert sdk.usage is not None and sdk.usage.input_tokens_details.cached_tokens == 5


def test_from_chat_tool_calls_with_text_and_reasoning() -> None:
    calls = [
        {"id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}},
        {"id": "call_b", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"location":"Rome"}'}},
    ]  # fmt: skip
    chat = completion(
        {"content": "Checking.", "reasoning_content": "Two cities.", "tool_calls": calls},
        "tool_calls",
    )
    request = body(tools=[WEATHER_TOOL], tool_choice="required", metadata={"run": "7"})
    doc = R.from_chat(chat, request, CREATED)
    s = resp_id(doc)
    assert doc["status"] == "completed"
    assert doc["output"] == [
        {"id": f"rs_{s}", "type": "reasoning", "status": "completed",
         "summary": [{"type": "summary_text", "text": "Two cities."}]},
        {"id": f"msg_{s}", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
        {"id": f"fc_{s}_0", "type": "function_call", "status": "completed", "call_id": "call_a",
         "name": "get_weather", "arguments": '{"location":"Paris"}'},
        {"id": f"fc_{s}_1", "type": "function_call", "status": "completed", "call_id": "call_b",
         "name": "get_weather", "arguments": '{"location":"Rome"}'},
    ]  # fmt: skip
    assert doc["tools"] == [{**WEATHER_TOOL, "strict": None}]
    assert (doc["tool_choice"], doc["metadata"]) == ("required", {"run": "7"})
    sdk = Response.model_validate(doc)
    assert [o.type for o in sdk.output] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert sdk.output_text == "Checking."


def test_from_chat_tool_call_only_has_no_message_item() -> None:
    call = {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    doc = R.from_chat(completion({"content": None, "tool_calls": [call]}, "tool_calls"), body(), 1)
    assert [o["type"] for o in doc["output"]] == ["function_call"]
    Response.model_validate(doc)


def test_from_chat_length_is_incomplete_max_output_tokens() -> None:
    request = body(max_output_tokens=16, temperature=0.5)
    doc = R.from_chat(completion({"content": "Once upon a"}, "length"), request, CREATED)
    assert doc["status"] == "incomplete"
    assert doc["incomplete_details"] == {"reason": "max_output_tokens"}
    assert doc["output"][0]["status"] == "incomplete"
    assert (doc["max_output_tokens"], doc["temperature"]) == (16, 0.5)
    sdk = Response.model_validate(doc)
    assert sdk.incomplete_details is not None
    assert sdk.incomplete_details.reason == "max_output_tokens"


def test_from_chat_content_filter_is_incomplete_content_filter() -> None:
    doc = R.from_chat(completion({"content": ""}, "content_filter"), body(), CREATED)
    assert (doc["status"], doc["incomplete_details"]) == (
        "incomplete",
        {"reason": "content_filter"},
    )
    assert doc["output"] == []
    Response.model_validate(doc)


def test_from_chat_refusal_becomes_a_refusal_part() -> None:
    doc = R.from_chat(completion({"content": None, "refusal": "I can't help."}), body(), 1)
    assert doc["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help."}]
    Response.model_validate(doc)


def test_from_chat_without_usage_and_with_text_format_echo() -> None:
    fmt = {"type": "json_schema", "name": "w", "schema": WEATHER_SCHEMA, "strict": True}
    doc = R.from_chat(completion({"content": "{}"}, usage=None), body(text={"format": fmt}), 1)
    assert doc["usage"] is None
    assert doc["text"] == {"format": fmt}
    Response.model_validate(doc)


def test_from_chat_ids_are_fresh_per_response() -> None:
    a = R.from_chat(completion({"content": "x"}), body(), 1)
    b = R.from_chat(completion({"content": "x"}), body(), 1)
    assert a["id"] != b["id"]


# --- streams --------------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def usage_chunk(usage: dict[str, Any] = USAGE) -> dict[str, Any]:
    return {**chunk({}), "choices": [], "usage": usage}


def text_chunks(*pieces: str, finish: str = "stop") -> list[dict[str, Any]]:
    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    out += [chunk({"content": p}) for p in pieces]
    return [*out, chunk({}, finish), usage_chunk()]


def tool_chunks(call_id: str = "call_abc", index: int = 0) -> list[dict[str, Any]]:
    first = {"index": index, "id": call_id, "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
    frags = ['{"loc', 'ation":"Par', 'is"}']
    return [
        chunk({"role": "assistant", "content": None, "tool_calls": [first], "refusal": None}),
        *[chunk({"tool_calls": [{"index": index, "function": {"arguments": f}}]}) for f in frags],
    ]


def run(chunks: list[dict[str, Any]], request: dict[str, Any] | None = None) -> bytes:
    st = R.StreamTranslator(request or body(stream=True), CREATED, RID)
    return b"".join(st.feed(c) for c in chunks) + st.finish()


def events(sse: bytes) -> list[dict[str, Any]]:
    """Parse SSE bytes; check framing, sequence numbers and each event against the SDK types."""
    assert sse.endswith(b"\n\n")
    out = []
    for n, block in enumerate(sse[:-2].split(b"\n\n")):
        head, data = block.split(b"\n")
        assert head.startswith(b"event: ") and data.startswith(b"data: ")
        doc = orjson.loads(data[6:])
        assert doc["type"] == head[7:].decode()
        assert doc["sequence_number"] == n
        STREAM_EVENT.validate_python(doc)  # strict: every required field, right types
        out.append(doc)
    return out


def kinds(sse: bytes) -> list[str]:
    return [e["type"] for e in events(sse)]


def sdk_client(sse: bytes) -> tuple[openai.OpenAI, httpx2.Client]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/responses"
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = openai.OpenAI(base_url="http://x/v1", api_key="k", max_retries=0, http_client=http)
    return client, http


def sdk_final(sse: bytes, **kwargs: Any) -> Any:
    """The official SDK's accumulator over these bytes: its final ParsedResponse."""
    client, http = sdk_client(sse)
    with client.responses.stream(model=MODEL, input="Hi", **kwargs) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    http.close()
    return final


def sdk_kinds(sse: bytes) -> list[str]:
    """Event types as `client.responses.create(stream=True)` yields them."""
    client, http = sdk_client(sse)
    out = [e.type for e in client.responses.create(model=MODEL, input="Hi", stream=True)]
    http.close()
    return out


TEXT_KINDS = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
TOOL_KINDS = [
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
]
START = ["response.created", "response.in_progress"]


def test_stream_text_events_in_api_order() -> None:
    sse = run(text_chunks("Hi", " there!"))
    evs = events(sse)
    assert [e["type"] for e in evs] == [*START, *TEXT_KINDS, "response.completed"]
    created = evs[0]["response"]
    assert (created["id"], created["status"], created["output"], created["usage"]) == (
        RID, "in_progress", [], None
    )  # fmt: skip
    msg_id = "msg_0123456789abcdef_0"
    assert evs[2] == {
        "type": "response.output_item.added", "output_index": 0, "sequence_number": 2,
        "item": {"id": msg_id, "type": "message", "status": "in_progress", "role": "assistant",
                 "content": []},
    }  # fmt: skip
    assert evs[3]["part"] == {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    assert evs[4] == {
        "type": "response.output_text.delta", "item_id": msg_id, "output_index": 0,
        "content_index": 0, "delta": "Hi", "logprobs": [], "sequence_number": 4,
    }  # fmt: skip
    assert evs[6]["text"] == "Hi there!"
    assert evs[8]["item"]["status"] == "completed"
    final = evs[-1]["response"]
    assert final["status"] == "completed"
    assert final["usage"] == RESPONSES_USAGE
    assert final["output"] == [evs[8]["item"]]
    Response.model_validate(final)


def test_stream_text_through_the_official_sdk() -> None:
    sse = run(text_chunks("Hi", " there!"))
    final = sdk_final(sse)
    assert final.id == RID
    assert final.output_text == "Hi there!"
    assert final.usage.input_tokens == 37 and final.usage.output_tokens == 11
    assert sdk_kinds(sse) == [*START, *TEXT_KINDS, "response.completed"]


def test_stream_tool_call_arguments_in_three_fragments() -> None:
    sse = run([*tool_chunks(), chunk({}, "tool_calls"), usage_chunk()])
    evs = events(sse)
    assert [e["type"] for e in evs] == [*START, *TOOL_KINDS, "response.completed"]
    fc_id = "fc_0123456789abcdef_0"
    assert evs[2]["item"] == {
        "id": fc_id, "type": "function_call", "status": "in_progress", "call_id": "call_abc",
        "name": "get_weather", "arguments": "",
    }  # fmt: skip
    assert [e["delta"] for e in evs[3:6]] == ['{"loc', 'ation":"Par', 'is"}']
    assert evs[6] == {
        "type": "response.function_call_arguments.done", "item_id": fc_id, "output_index": 0,
        "name": "get_weather", "arguments": '{"location":"Paris"}', "sequence_number": 6,
    }  # fmt: skip
    assert evs[7]["item"]["arguments"] == '{"location":"Paris"}'
    assert evs[7]["item"]["status"] == "completed"

    final = sdk_final(sse, tools=[{**WEATHER_TOOL, "strict": True}])
    (call,) = final.output
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments) == (
        "call_abc",
        "get_weather",
        '{"location":"Paris"}',
    )
    assert call.parsed_arguments == {"location": "Paris"}
    assert final.usage.total_tokens == 48
    assert sdk_kinds(sse)[-1] == "response.completed"


def test_stream_text_then_tool_call() -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me check."}),
        *tool_chunks()[:1],
        *tool_chunks()[1:],
        chunk({}, "tool_calls"),
        usage_chunk(),
    ]
    sse = run(chunks)
    text = [*TEXT_KINDS[:3], *TEXT_KINDS[4:]]  # one text delta
    assert kinds(sse) == [*START, *text, *TOOL_KINDS, "response.completed"]
    evs = events(sse)
    assert evs[-2]["output_index"] == 1
    final = sdk_final(sse)
    assert final.output_text == "Let me check."
    assert [o.type for o in final.output] == ["message", "function_call"]
    assert final.output[1].arguments == '{"location":"Paris"}'
    assert [o.id for o in final.output] == ["msg_0123456789abcdef_0", "fc_0123456789abcdef_1"]


def test_stream_parallel_tool_calls_each_get_an_item() -> None:
    chunks = [*tool_chunks("call_1", 0), *tool_chunks("call_2", 1)[1:]]
    chunks.insert(4, tool_chunks("call_2", 1)[0])
    sse = run([*chunks, chunk({}, "tool_calls"), usage_chunk()])
    final = sdk_final(sse)
    calls = [(o.call_id, o.arguments) for o in final.output]
    assert calls == [("call_1", '{"location":"Paris"}'), ("call_2", '{"location":"Paris"}')]


def test_stream_waits_for_the_usage_chunk_after_finish() -> None:
    st = R.StreamTranslator(body(stream=True), CREATED, RID)
    out = b"".join(st.feed(c) for c in text_chunks("Hi")[:-1])
    assert b"response.completed" not in out
    assert b"response.output_item.done" in out
    assert st.usage is None
    end = st.feed(usage_chunk())
    assert kinds(out + end)[-1] == "response.completed"
    assert events(out + end)[-1]["response"]["usage"] == RESPONSES_USAGE
    assert st.usage == USAGE
    assert st.finish() == b""
    assert st.finish() == b""  # idempotent


def test_stream_finish_without_usage_still_completes() -> None:
    st = R.StreamTranslator(body(stream=True), CREATED, RID)
    out = b"".join(st.feed(c) for c in text_chunks("Hi")[:-1]) + st.finish()
    evs = events(out)
    assert evs[-1]["type"] == "response.completed"
    assert evs[-1]["response"]["usage"] is None
    assert st.finish() == b""
    assert st.feed(usage_chunk()) == b""  # after the end: kept for accounting only
    assert st.usage is not None and st.usage["total_tokens"] == 48


def test_stream_usage_on_the_finish_chunk_ends_at_once() -> None:
    st = R.StreamTranslator(body(stream=True), CREATED, RID)
    last = {**chunk({}, "stop"), "usage": USAGE}
    out = st.feed(chunk({"content": "Hi"})) + st.feed(last)
    assert kinds(out)[-1] == "response.completed"
    assert st.finish() == b""


def test_stream_length_is_response_incomplete() -> None:
    sse = run(text_chunks("Once", " upon", finish="length"), body(max_output_tokens=16))
    evs = events(sse)
    assert evs[-1]["type"] == "response.incomplete"
    response = evs[-1]["response"]
    assert (response["status"], response["incomplete_details"]) == (
        "incomplete", {"reason": "max_output_tokens"}
    )  # fmt: skip
    assert response["output"][0]["status"] == "incomplete"
    assert response["max_output_tokens"] == 16
    assert sdk_kinds(sse)[-1] == "response.incomplete"


def test_stream_reasoning_then_text() -> None:
    chunks = [
        chunk({"role": "assistant", "content": None, "reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing."}),
        chunk({"reasoning": " More."}),
        chunk({"content": "Answer."}),
        chunk({}, "stop"),
        usage_chunk(),
    ]
    sse = run(chunks)
    assert kinds(sse) == [
        *START,
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        *[k for k in TEXT_KINDS if k != "response.output_text.delta"][:2],
        "response.output_text.delta",
        *TEXT_KINDS[4:],
        "response.completed",
    ]
    evs = events(sse)
    assert evs[7]["text"] == "Thinking. More."
    assert evs[9]["item"]["summary"] == [{"type": "summary_text", "text": "Thinking. More."}]
    final = sdk_final(sse)
    assert final.output_text == "Answer."
    assert final.output[0].type == "reasoning"
    assert final.output[0].summary[0].text == "Thinking. More."


def test_stream_refusal() -> None:
    chunks = [chunk({"role": "assistant", "refusal": "I can't"}), chunk({"refusal": " help."})]
    sse = run([*chunks, chunk({}, "stop"), usage_chunk()])
    evs = events(sse)
    assert [e["type"] for e in evs][3:7] == [
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.delta",
        "response.refusal.done",
    ]
    assert evs[6]["refusal"] == "I can't help."
    final = sdk_final(sse)
    assert final.output[0].content[0].refusal == "I can't help."


def test_stream_empty_upstream_still_makes_a_valid_stream() -> None:
    st = R.StreamTranslator(body(stream=True), CREATED, RID)
    sse = st.finish()
    assert kinds(sse) == [*START, "response.completed"]
    assert sdk_final(sse).output == []


def test_stream_error_event_then_response_failed() -> None:
    st = R.StreamTranslator(body(stream=True), CREATED, RID)
    out = b"".join(st.feed(c) for c in text_chunks("Hi")[:2])
    err = E.UpstreamError("The upstream stream ended early.", code="upstream_stream_truncated")
    out += st.error_event(err)
    evs = events(out)
    assert [e["type"] for e in evs][-2:] == ["error", "response.failed"]
    assert evs[-2] == {
        "type": "error", "code": "upstream_stream_truncated",
        "message": "The upstream stream ended early.", "param": None, "sequence_number": 5,
    }  # fmt: skip
    failed = evs[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "server_error",
        "message": "The upstream stream ended early.",
    }
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"] == "Hi"
    Response.model_validate(failed)
    assert st.finish() == b""
    assert st.error_event(err) == b""
    assert sdk_kinds(out)[-2:] == ["error", "response.failed"]


def test_stream_error_before_anything_starts_the_response_first() -> None:
    st = R.StreamTranslator(body(stream=True), CREATED, RID)
    sse = st.error_event(E.RateLimitError("Slow down.", code="rate_limit_exceeded"))
    evs = events(sse)
    assert [e["type"] for e in evs] == [*START, "error", "response.failed"]
    assert evs[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
    client, http = sdk_client(sse)
    with client.responses.stream(model=MODEL, input="Hi") as s:
        assert [e.type for e in s][-2:] == ["error", "response.failed"]
        with pytest.raises(RuntimeError):
            s.get_final_response()
    http.close()


def test_stream_response_echoes_the_request() -> None:
    request = body(
        stream=True, instructions="Be brief.", tools=[WEATHER_TOOL], tool_choice="auto",
        temperature=0.3, metadata={"a": "b"}, reasoning={"effort": "low"},
    )  # fmt: skip
    evs = events(run(text_chunks("Hi"), request))
    for e in (evs[0], evs[-1]):
        r = e["response"]
        assert (r["instructions"], r["temperature"], r["metadata"]) == (
            "Be brief.",
            0.3,
            {"a": "b"},
        )
        assert r["tools"] == [{**WEATHER_TOOL, "strict": None}]
        assert r["reasoning"] == {"effort": "low", "summary": None}
        assert (r["model"], r["created_at"], r["store"]) == (MODEL, CREATED, False)


def test_stream_ignores_non_dict_and_empty_chunks() -> None:
    st = R.StreamTranslator(body(stream=True), CREATED, RID)
    assert st.feed("nope") == b""  # type: ignore[arg-type]
    out = st.feed({**chunk({}), "choices": []})
    assert kinds(out) == START


def test_stream_does_not_mutate_the_request() -> None:
    request = body(stream=True, tools=[WEATHER_TOOL], text={"format": {"type": "json_object"}})
    before = copy.deepcopy(request)
    run(text_chunks("Hi"), request)
    R.from_chat(completion({"content": "x"}), request, 1)
    R.to_chat(request)
    assert request == before


def test_stream_without_response_id_makes_a_resp_hex_id() -> None:
    st = R.StreamTranslator(body(stream=True), CREATED)
    evs = events(st.finish())
    rid = evs[0]["response"]["id"]
    assert rid.startswith("resp_") and int(rid[5:], 16) >= 0
    assert evs[-1]["response"]["id"] == rid
