"""Cohere Chat v2 translator, on payloads shaped like the examples in Cohere's docs.

Sources (request/response/stream/error shapes and example values):
  Chat (v2 reference)             https://docs.cohere.com/reference/chat
  Chat with streaming             https://docs.cohere.com/reference/chat-stream
  Streaming guide (event types)   https://docs.cohere.com/v2/docs/streaming
  Tool use streaming (examples)   https://docs.cohere.com/docs/tool-use-streaming
  Tool use, tool_plan, tool msgs  https://docs.cohere.com/docs/tools
                                  https://docs.cohere.com/docs/migrating-v1-to-v2
  Using the Chat API (response)   https://docs.cohere.com/docs/chat-api
  Structured outputs (JSON)       https://docs.cohere.com/v2/docs/structured-outputs-json
  Image inputs (image_url)        https://docs.cohere.com/docs/image-inputs
  Errors (status codes, messages) https://docs.cohere.com/errors-reference
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from llm_proxy import errors as E
from llm_proxy.formats import cohere as co
from llm_proxy.formats.sse import payloads

USER = [{"role": "user", "content": "What's the weather in Toronto?"}]
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "gets the weather of a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "e.g. Toronto"}},
            "required": ["location"],
        },
    },
}
TIME: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
TORONTO = '{"location":"Toronto"}'
PLAN = "I will search for the weather in Toronto."


def up(body: dict[str, Any], params: dict[str, Any] | None = None, stream: bool = False) -> Any:
    return orjson.loads(co.to_upstream(body, "command-a-03-2025", params or {}, stream))


def req(**kw: Any) -> dict[str, Any]:
    return {"model": "co-pub", "messages": USER, **kw}


def call(id: str, name: str, args: str) -> dict[str, Any]:
    """A tool call: OpenAI and Cohere v2 share this shape."""
    return {"id": id, "type": "function", "function": {"name": name, "arguments": args}}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


# --- requests -------------------------------------------------------------------------------


def test_request_roles_and_sampling_params_map_one_to_one() -> None:
    history = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]
    body = {
        "model": "co-pub",
        "messages": [
            {"role": "system", "content": "You respond in concise sentences."},
            {"role": "developer", "content": [text_part("Be brief.")]},
            *history,
            {"role": "user", "content": "What is 2 + 2", "name": "alice"},
        ],
        **{"max_completion_tokens": 100, "temperature": 0.3, "top_p": 0.75, "top_k": 40},
        **{"stop": "END", "seed": 42, "presence_penalty": 0.1, "frequency_penalty": 0.2},
        **{"logprobs": True, "top_logprobs": 3, "user": "u-1", "parallel_tool_calls": False},
        **{"stream": True, "stream_options": {"include_usage": True}},
    }
    assert up(body, stream=True) == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "You respond in concise sentences."},
            {"role": "system", "content": [text_part("Be brief.")]},
            *history,
            {"role": "user", "content": "What is 2 + 2"},
        ],
        **{"max_tokens": 100, "stop_sequences": ["END"], "temperature": 0.3, "p": 0.75, "k": 40},
        **{"seed": 42, "presence_penalty": 0.1, "frequency_penalty": 0.2, "logprobs": True},
        "stream": True,
    }


def test_request_deployment_params_fill_only_what_the_client_left_out() -> None:
    params = {"max_tokens": 512, "temperature": 0.9, "safety_mode": "STRICT", "stop": ["x", "y"]}
    assert up(req(temperature=0.1), params) == {
        **{"model": "command-a-03-2025", "messages": USER, "max_tokens": 512},
        **{"stop_sequences": ["x", "y"], "temperature": 0.1, "safety_mode": "STRICT"},
    }
    assert up(req(max_tokens=7), {"max_completion_tokens": 99})["max_tokens"] == 7
    thinking = {"type": "enabled", "token_budget": 1000}
    assert up(req(thinking=thinking))["thinking"] == thinking


def test_request_user_text_and_image_parts_use_the_v2_vision_shape() -> None:
    b64 = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    url = {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg", "detail": "low"}}
    content = [text_part("Please create two markdown tables."), b64, url]
    assert up(req(messages=[{"role": "user", "content": content}]))["messages"] == [
        {"role": "user", "content": [text_part("Please create two markdown tables."), b64, url]}
    ]


def test_request_tool_history_keeps_calls_plan_and_tool_results() -> None:
    weather = call("get_weather_k88p0m8504w5", "get_weather", TORONTO)
    no_args = {"id": "t2", "function": {"name": "get_time", "arguments": {}}}
    results = [
        {"role": "tool", "tool_call_id": "get_weather_k88p0m8504w5", "content": '{"temp": "20C"}'},
        {"role": "tool", "tool_call_id": "t2", "content": [text_part("09:00")]},
    ]
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": PLAN,
            "tool_calls": [weather, no_args],
        },
        *results,
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't say."}]},
    ]
    assert up(req(messages=messages, tools=[WEATHER]))["messages"] == [
        *USER,
        {
            "role": "assistant",
            "tool_plan": PLAN,
            "tool_calls": [weather, call("t2", "get_time", "{}")],
        },
        *results,
        {"role": "assistant", "content": [text_part("I can't say.")]},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"tools": [WEATHER, TIME]}),
        ("required", {"tools": [WEATHER, TIME], "tool_choice": "REQUIRED"}),
        ("none", {"tools": [WEATHER, TIME], "tool_choice": "NONE"}),
        # v2 has no named choice: only the named tool is sent, and a call is REQUIRED.
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"tools": [TIME], "tool_choice": "REQUIRED"},
        ),
    ],
)
def test_request_tools_and_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    assert up(req(tools=[WEATHER, TIME], tool_choice=choice)) == {
        **{"model": "command-a-03-2025", "messages": USER},
        **expected,
    }
    assert up(req(tools=[WEATHER])) == {**up(req()), "tools": [WEATHER]}


def test_request_tool_choice_without_tools_is_dropped_and_strict_becomes_strict_tools() -> None:
    assert up(req(tool_choice="required")) == {"model": "command-a-03-2025", "messages": USER}
    strict = {"type": "function", "function": {"name": "f", "strict": True}}
    assert up(req(tools=[strict]))["strict_tools"] is True
    assert up(req(tools=[strict], strict_tools=False))["strict_tools"] is False


PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.mark.parametrize(
    ("rf", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
            {"type": "json_object", "json_schema": PERSON},
        ),
        ({"type": "json_schema", "json_schema": {"name": "any"}}, {"type": "json_object"}),
    ],
)
def test_request_response_format(rf: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert up(req(response_format=rf)).get("response_format") == expected


def user(*parts: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (req(n=2), "n"),
        (req(messages=[{"role": "function", "name": "f", "content": "x"}]), "messages[0].role"),
        (req(messages=["hello"]), "messages[0].role"),
        (req(messages=user({"type": "input_audio"})), "messages[0].content[0]"),
        (req(messages=user({"type": "image_url", "image_url": {}})), "messages[0].content[0]"),
        (
            req(messages=[{"role": "system", "content": [{"type": "image_url"}]}]),
            "messages[0].content[0]",
        ),
        (req(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
        (req(tools=[{"type": "web_search"}]), "tools[0]"),
        (
            req(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "x"}}),
            "tool_choice",
        ),
        (req(tools=[WEATHER], tool_choice="sometimes"), "tool_choice"),
        (req(response_format={"type": "xml"}), "response_format"),
    ],
)
def test_request_what_cohere_cannot_express_is_a_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(E.InvalidRequestError) as e:
        up(body)
    assert (e.value.status, e.value.param) == (400, param)


# --- responses ------------------------------------------------------------------------------


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def cohere_usage(billed: tuple[int, int], tokens: tuple[int, int]) -> dict[str, Any]:
    return {
        "billed_units": {"input_tokens": billed[0], "output_tokens": billed[1]},
        "tokens": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
    }


def completion(message: dict[str, Any], finish: str, u: dict[str, Any] | None, id: str) -> Any:
    out = {
        **{"id": f"chatcmpl-{id}", "object": "chat.completion", "created": 0, "model": "co-pub"},
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    return {**out, "usage": u} if u is not None else out


def down(doc: dict[str, Any], created: int = 0) -> tuple[Any, dict[str, Any] | None]:
    out, u = co.from_upstream(orjson.dumps(doc), "co-pub", created=created)
    return orjson.loads(out), u


TITLE = "The Art of API Design: Crafting Elegant and Powerful Interfaces"
TEXT_ID = "5a50480a-cf52-46f0-af01-53d18539bd31"
TEXT_DOC: dict[str, Any] = {
    "id": TEXT_ID,
    "message": {"role": "assistant", "content": [text_part(TITLE)]},
    "finish_reason": "COMPLETE",
    "usage": cohere_usage((17, 12), (215, 12)),
}
TITLE_MESSAGE = {"role": "assistant", "content": TITLE, "refusal": None}


def test_response_text_from_the_docs_example_prefers_tokens_over_billed_units() -> None:
    out, u = down(TEXT_DOC, created=1700000000)
    expected = completion(TITLE_MESSAGE, "stop", usage(215, 12), TEXT_ID)
    assert (out, u) == ({**expected, "created": 1700000000}, usage(215, 12))


def test_response_usage_falls_back_to_billed_units_and_to_meta() -> None:
    billed = {**TEXT_DOC, "usage": {"billed_units": {"input_tokens": 17, "output_tokens": 12}}}
    assert down(billed)[1] == usage(17, 12)
    bare = {k: v for k, v in TEXT_DOC.items() if k != "usage"}
    assert down({**bare, "meta": TEXT_DOC["usage"]})[1] == usage(215, 12)  # older v2 examples
    assert down(bare) == (completion(TITLE_MESSAGE, "stop", None, TEXT_ID), None)
    assert down({**TEXT_DOC, "usage": {"search_units": 1}})[1] is None


def test_response_tool_calls_and_tool_plan() -> None:
    doc = {
        "id": "tool-resp-1",
        "finish_reason": "TOOL_CALL",
        "message": {
            "role": "assistant",
            "tool_plan": PLAN,
            "tool_calls": [
                call("get_weather_k88p0m8504w5", "get_weather", TORONTO),
                {"id": "get_time_1", "type": "function", "function": {"name": "get_time"}},
            ],
        },
        "usage": cohere_usage((37, 28), (913.0, 83.0)),  # type: ignore[arg-type]
    }
    message = {
        **{"role": "assistant", "content": None, "refusal": None, "reasoning_content": PLAN},
        "tool_calls": [
            call("get_weather_k88p0m8504w5", "get_weather", TORONTO),
            call("get_time_1", "get_time", "{}"),
        ],
    }
    assert down(doc)[0] == completion(message, "tool_calls", usage(913, 83), "tool-resp-1")


def test_response_thinking_content_and_logprobs() -> None:
    content = [{"type": "thinking", "thinking": "Two plus two."}, text_part("4"), text_part(".")]
    doc = {
        "id": "r",
        "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": content, "citations": [{"start": 0}]},
        "logprobs": [
            {"text": "4", "token_ids": [19], "logprobs": [-0.25]},
            {"text": ".", "token_ids": [20, 21], "logprobs": [-0.5, -0.25]},
        ],
    }
    message = {"role": "assistant", "content": "4.", "refusal": None}
    logprobs = {
        "content": [
            {"token": "4", "logprob": -0.25, "bytes": [52], "top_logprobs": []},
            {"token": ".", "logprob": -0.75, "bytes": [46], "top_logprobs": []},
        ],
        "refusal": None,
    }
    assert down(doc)[0]["choices"][0] == {
        **{"index": 0, "message": {**message, "reasoning_content": "Two plus two."}},
        **{"logprobs": logprobs, "finish_reason": "stop"},
    }


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        *[("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length")],
        ("TOOL_CALL", "stop"),  # no tool call came back: nothing to call
        *[("ERROR_TOXIC", "content_filter"), ("SOMETHING_NEW", "stop"), (None, "stop")],
    ],
)
def test_response_finish_reason_maps(reason: str | None, finish: str) -> None:
    assert down({**TEXT_DOC, "finish_reason": reason})[0]["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize(
    ("reason", "status", "code"),
    [("ERROR", 502, "upstream_error"), ("TIMEOUT", 504, "upstream_timeout")],
)
def test_response_error_and_timeout_are_failures(reason: str, status: int, code: str) -> None:
    with pytest.raises(E.GatewayError) as e:
        down({**TEXT_DOC, "finish_reason": reason})
    assert (e.value.status, e.value.code) == (status, code)


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"id": "x"}', b'{"message": "hi"}'])
def test_response_that_is_not_a_chat_response_is_an_upstream_error(raw: bytes) -> None:
    with pytest.raises(E.UpstreamError) as e:
        co.from_upstream(raw, "co-pub")
    assert e.value.status == 502


# --- streams --------------------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def ev(kind: str, index: int | None = None, **message: Any) -> dict[str, Any]:
    """A Cohere stream event: {"type", "index"?, "delta": {"message": {...}}}."""
    head: dict[str, Any] = {"type": kind} if index is None else {"type": kind, "index": index}
    return {**head, "delta": {"message": message}}


def text(t: str) -> dict[str, Any]:
    return ev("content-delta", 0, content={"text": t})


def start(id: str) -> dict[str, Any]:
    empty: dict[str, Any] = {"content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    return {"id": id, **ev("message-start", role="assistant", **empty)}


def end(reason: str, billed: tuple[int, int], tokens: tuple[int, int]) -> dict[str, Any]:
    return {
        "type": "message-end",
        "delta": {"finish_reason": reason, "usage": cohere_usage(billed, tokens)},
    }


def decode(out: bytes) -> list[Any]:
    return [p.decode() if p == b"[DONE]" else orjson.loads(p) for p in payloads(out)]


ANSWER_ID = "e8f9afc1-0888-46f0-a9ed-eb0e5a51e17f"


def chunk(delta: dict[str, Any], finish: str | None = None, id: str = ANSWER_ID) -> Any:
    return {
        **{"id": f"chatcmpl-{id}", "object": "chat.completion.chunk", "created": 0},
        "model": "co-pub",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(u: dict[str, Any], id: str = ANSWER_ID) -> Any:
    return {**chunk({}, id=id), "choices": [], "usage": u}


def run(
    raw: bytes, wants_usage: bool = False, cut: int | None = None
) -> tuple[list[Any], co.StreamState]:
    """Feed the transcript one event per segment, as a slow upstream would."""
    state = co.new_stream_state("co-pub", wants_usage)
    events = [e + b"\n\n" for e in raw.split(b"\n\n") if e]
    out = b"".join(co.from_upstream_events(e, state) for e in events[:cut])
    return decode(out), state


WORDS = ["It", " is", " currently", " 2", "4", "°", "C in", " Madrid", "."]
SOURCE = {"type": "tool", "id": "get_weather_p1t92w7gfgq7:0", "tool_output": {"temp": "24C"}}
ANSWER = [  # the docs' response generation step, shortened, with its citation events
    start(ANSWER_ID),
    ev("content-start", 0, content={"text": "", "type": "text"}),
    *[text(w) for w in WORDS],
    ev("citation-start", 0, citations={"start": 16, "end": 20, "sources": [SOURCE]}),
    {"type": "citation-end", "index": 0},
    {"type": "content-end", "index": 0},
    end("COMPLETE", (39, 9), (1084, 9)),
]


def test_stream_response_generation_from_the_docs_example() -> None:
    chunks, state = run(sse(*ANSWER))
    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        *[chunk({"content": w}) for w in WORDS],
        chunk({}, "stop"),
        "[DONE]",
    ]
    assert (state.done, state.chunks, state.usage) == (True, len(ANSWER), usage(1084, 9))


def test_stream_usage_chunk_when_the_client_asked_and_one_segment_per_read() -> None:
    state = co.new_stream_state("co-pub", True)
    chunks = decode(co.from_upstream_events(sse(*ANSWER), state))
    assert chunks[-3:] == [chunk({}, "stop"), usage_chunk(usage(1084, 9)), "[DONE]"]
    # Anything after message-end (e.g. a `data: [DONE]`) changes nothing.
    assert co.from_upstream_events(b"data: [DONE]\n\n" + sse(text("late")), state) == b""
    assert co.finish_stream(state, []) == b""


PLAN_ID = "fba98ad3-e5a1-413c-a8de-84fbf9baabf7"
PLAN_WORDS = ["I", " will", " search", " for", " the", " weather", " in", " Madrid", "."]
ARGS = [
    ['{\n    "', "location", '":', ' "', "Madrid", '"', "\n", "}"],
    ['{\n    "', "location", '":', ' "', "Bras", "ilia", '"', "\n", "}"],
]
CALL_IDS = ["get_weather_p1t92w7gfgq7", "get_weather_ay6nmvjgp9vn"]


def tool_transcript() -> bytes:
    """The docs' tool calling step: a plan, then two get_weather calls in argument fragments."""
    events = [start(PLAN_ID), *[ev("tool-plan-delta", tool_plan=w) for w in PLAN_WORDS]]
    for i, (call_id, frags) in enumerate(zip(CALL_IDS, ARGS, strict=True)):
        events.append(ev("tool-call-start", i, tool_calls=call(call_id, "get_weather", "")))
        events += [
            ev("tool-call-delta", i, tool_calls={"function": {"arguments": f}}) for f in frags
        ]
        events.append({"type": "tool-call-end", "index": i})
    return sse(*events, end("TOOL_CALL", (37, 28), (913, 83)))


def begin(index: int, id: str, name: str, args: str = "") -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **call(id, name, args)}]}


def args(index: int, part: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "function": {"arguments": part}}]}


def test_stream_tool_calls_from_the_docs_example() -> None:
    chunks, state = run(tool_transcript(), wants_usage=True)
    assert chunks == [
        chunk({"role": "assistant", "content": ""}, id=PLAN_ID),
        *[chunk({"reasoning_content": w}, id=PLAN_ID) for w in PLAN_WORDS],
        chunk(begin(0, CALL_IDS[0], "get_weather"), id=PLAN_ID),
        *[chunk(args(0, f), id=PLAN_ID) for f in ARGS[0]],
        chunk(begin(1, CALL_IDS[1], "get_weather"), id=PLAN_ID),
        *[chunk(args(1, f), id=PLAN_ID) for f in ARGS[1]],
        chunk({}, "tool_calls", id=PLAN_ID),
        usage_chunk(usage(913, 83), id=PLAN_ID),
        "[DONE]",
    ]
    assert state.usage == usage(913, 83)


def test_stream_tool_calls_reassemble_with_the_openai_sdk_stream_helper() -> None:
    chunks, _ = run(tool_transcript())
    helper = ChatCompletionStreamState()
    for c in chunks[:-1]:
        helper.handle_chunk(ChatCompletionChunk.model_validate(c))
    final = helper.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(t.id, t.function.name, t.function.arguments) for t in calls] == [
        (CALL_IDS[0], "get_weather", '{\n    "location": "Madrid"\n}'),
        (CALL_IDS[1], "get_weather", '{\n    "location": "Brasilia"\n}'),
    ]


def test_stream_odd_tool_events_still_give_parseable_calls() -> None:
    raw = sse(
        ev("tool-call-delta", tool_calls={"function": {"arguments": "{}"}}),  # before any start
        ev("tool-call-start", tool_calls=[{"id": "a", "function": {"name": "now"}}]),
        {"type": "tool-call-end"},  # no arguments at all: "{}" is sent
        ev("tool-call-start", tool_calls={"id": "b", "function": {"name": "f", "arguments": "["}}),
        ev("tool-call-delta", tool_calls=[{"function": {"arguments": "1]"}}]),
        ev("tool-call-delta", tool_calls={"function": {}}),
        {"type": "tool-call-end"},
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL"}},
    )
    chunks, state = run(raw, wants_usage=True)
    assert chunks == [
        chunk({"role": "assistant", **begin(0, "a", "now")}, id=""),
        chunk(args(0, "{}"), id=""),
        chunk(begin(1, "b", "f", "["), id=""),
        chunk(args(1, "1]"), id=""),
        chunk({}, "tool_calls", id=""),
        usage_chunk(usage(0, 1), id=""),  # no usage came: the estimate, one token per delta
        "[DONE]",
    ]
    assert state.usage == {**usage(0, 1), "estimated": True}


def test_stream_thinking_and_logprobs_deltas() -> None:
    thinking = ev("content-delta", 0, content={"thinking": "Hmm."})
    logprobs = {"text": "Hi", "token_ids": [1], "logprobs": [-0.5]}
    chunks, _ = run(sse(start("t"), thinking, {**text("Hi"), "logprobs": logprobs}, text("")))
    with_lp = chunk({"content": "Hi"}, id="t")
    entry = {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}
    with_lp["choices"][0]["logprobs"] = {"content": [entry], "refusal": None}
    assert chunks == [
        chunk({"role": "assistant", "content": ""}, id="t"),
        chunk({"reasoning_content": "Hmm."}, id="t"),
        with_lp,
    ]


def gateway_error(message: str, etype: str, code: str | None, param: str | None = None) -> Any:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


STOPPED = "The upstream model stopped with an error (finish_reason ERROR)."
TIMED_OUT = "The upstream model timed out (finish_reason TIMEOUT)."


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("ERROR", gateway_error(STOPPED, "upstream_error", "upstream_error")),
        ("TIMEOUT", gateway_error(TIMED_OUT, "timeout_error", "upstream_timeout")),
    ],
)
def test_stream_error_finish_is_an_error_event_without_done(reason: str, error: Any) -> None:
    chunks, state = run(sse(*ANSWER[:3], end(reason, (1, 1), (5, 1))), wants_usage=True)
    assert chunks == [chunk({"role": "assistant", "content": ""}), chunk({"content": "It"}), error]
    assert (state.done, state.usage) == (True, usage(5, 1))
    assert co.finish_stream(state, []) == b""


TRUNCATED = gateway_error(
    "The upstream stream ended before the response was complete.",
    "upstream_error",
    "upstream_stream_truncated",
)


def test_finish_stream_without_message_end_is_a_truncation_error() -> None:
    chunks, state = run(sse(*ANSWER), cut=4)
    assert chunks[-1] == chunk({"content": " is"})
    assert state.usage == {**usage(0, 2), "estimated": True}  # kept if the client leaves now
    out = co.finish_stream(state, [b'{"type":"content-delta","index":0,"del'])
    assert (decode(out), state.done) == ([TRUNCATED], False)


def test_finish_stream_processes_a_complete_unterminated_last_event() -> None:
    _, state = run(sse(*ANSWER), cut=len(ANSWER) - 1)
    out = co.finish_stream(state, [orjson.dumps(ANSWER[-1])])
    assert (decode(out), state.done) == ([chunk({}, "stop"), "[DONE]"], True)
    _, state = run(sse(*ANSWER), cut=3)
    out = co.finish_stream(state, [orjson.dumps(text("x"))])
    assert decode(out) == [chunk({"content": "x"}), TRUNCATED]


def test_finish_stream_after_the_finish_reason_ends_normally() -> None:
    state = co.new_stream_state("co-pub", False)
    state.finish = "stop"  # a finish went out but the stream was not closed
    assert decode(co.finish_stream(state, [])) == ["[DONE]"]


def test_stream_ignores_non_json_and_unknown_events() -> None:
    state = co.new_stream_state("co-pub", False)
    events = [{"type": "debug"}, {"type": "content-end"}, {"type": "content-delta", "delta": {}}]
    raw = b"data: not json\n\ndata: [1]\n\n" + sse(*events)
    assert co.from_upstream_events(raw, state) == b""
    assert (state.chunks, state.started) == (5, False)
    # A message-end with nothing before it still gives a whole (empty) answer.
    out = decode(co.from_upstream_events(sse({"type": "message-end", "delta": {}}), state))
    assert out == [chunk({"role": "assistant"}, "stop", id=""), "[DONE]"]


# --- errors ---------------------------------------------------------------------------------


def cohere_error(message: str) -> bytes:
    return orjson.dumps({"id": "276562f4-bb27-49f9-a044-9145b05f0fd0", "message": message})


MODEL_404 = (
    "model 'xyz' not found, make sure the correct model ID was used and that you have access to"
    " the model."
)
TOO_MANY = (
    "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292."
    " Try using a shorter prompt, or enabling prompt truncating."
)
BOTH = "invalid request: cannot specify both frequency_penalty and presence_penalty."
ROLE = "invalid request: messages.0.role must be valid"
CRASH = "internal server error, this has been reported to our developers"
AUTH = "The upstream provider refused the gateway's credentials (HTTP 401)."
AUTH_FAILED = gateway_error(AUTH, "upstream_error", "upstream_auth_failed")
NO_PAGE, CANCELLED = "404 page not found", "request cancelled"
BAD = "invalid_request_error"


@pytest.mark.parametrize(
    ("status", "message", "expected_status", "expected"),
    [
        (400, BOTH, 400, gateway_error(BOTH, BAD, None)),
        (400, TOO_MANY, 400, gateway_error(TOO_MANY, BAD, "context_length_exceeded", "messages")),
        (401, "invalid api token", 502, AUTH_FAILED),
        (498, "invalid api token", 502, AUTH_FAILED),
        (404, MODEL_404, 404, gateway_error(MODEL_404, BAD, "model_not_found", "model")),
        (404, NO_PAGE, 404, gateway_error(NO_PAGE, "not_found_error", None)),
        (422, ROLE, 400, gateway_error(ROLE, BAD, None)),
        (499, CANCELLED, 502, gateway_error(CANCELLED, "upstream_error", "upstream_error")),
        (500, CRASH, 502, gateway_error(CRASH, "upstream_error", "upstream_error")),
        (503, "unavailable", 503, gateway_error("unavailable", "service_unavailable_error", None)),
        (504, "timed out", 504, gateway_error("timed out", "timeout_error", "upstream_timeout")),
    ],
)
def test_error_bodies_map_to_gateway_errors(
    status: int, message: str, expected_status: int, expected: dict[str, Any]
) -> None:
    err = co.from_upstream_error(status, cohere_error(message), {})
    assert (err.status, err.body(), err.headers) == (expected_status, expected, {})


def test_error_rate_limit_keeps_retry_after() -> None:
    message = "You are past the per minute request limit, please wait and try again later."
    err = co.from_upstream_error(429, cohere_error(message), {"retry-after": "7", "x-id": "1"})
    expected = gateway_error(message, "rate_limit_error", None)
    assert (err.status, err.body(), err.headers) == (429, expected, {"Retry-After": "7"})


def test_error_with_the_clients_own_key_stays_an_auth_error() -> None:
    err = co.from_upstream_error(401, cohere_error("invalid api token"), {}, True)
    expected = gateway_error("invalid api token", "authentication_error", "invalid_api_key")
    assert (err.status, err.body()) == (401, expected)


def test_error_text_is_redacted_exact_status_kept_and_plain_bodies_map_by_status() -> None:
    raw = cohere_error("bad key Bearer co-SECRETSECRET and hunter2hunter2")
    err = co.from_upstream_error(418, raw, {}, exact_status=True, secrets=(b"hunter2hunter2",))
    assert (err.status, err.message) == (418, "bad key Bearer *** and ***")
    plain = co.from_upstream_error(502, b"<html>Bad Gateway</html>", {})
    assert (plain.status, plain.message) == (502, "<html>Bad Gateway</html>")
    empty = co.from_upstream_error(499, b"{}", {})
    assert (empty.status, empty.message) == (502, "The upstream provider cancelled the request.")
