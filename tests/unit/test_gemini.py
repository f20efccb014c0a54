"""Gemini translator (and the fake Gemini server), on payloads shaped like Google's doc examples.

Sources (request/response/stream/error shapes and example values):
  generateContent / streamGenerateContent  https://ai.google.dev/api/generate-content
  Text generation, streaming (alt=sse)     https://ai.google.dev/gemini-api/docs/text-generation
  Function calling                         https://ai.google.dev/gemini-api/docs/function-calling
  Structured output                        https://ai.google.dev/gemini-api/docs/structured-output
  Image understanding (inline/file data)   https://ai.google.dev/gemini-api/docs/image-understanding
  Thinking (thinkingBudget, thoughts)      https://ai.google.dev/gemini-api/docs/thinking
  Thought signatures (+ OpenAI compat)     https://ai.google.dev/gemini-api/docs/thought-signatures
  OpenAI compatibility (reasoning_effort)  https://ai.google.dev/gemini-api/docs/openai
  Safety (finishReason, promptFeedback)    https://ai.google.dev/gemini-api/docs/safety-settings
  Error codes                              https://ai.google.dev/gemini-api/docs/troubleshooting
  Error bodies seen in the wild            https://github.com/google-gemini/gemini-cli/issues/6678
                                           (token limit), https://github.com/cequence-io/
                                           openai-scala-client/issues/109 (API_KEY_INVALID),
                                           https://github.com/browserbase/mcp-server-browserbase/
                                           issues/129 (RetryInfo retryDelay)
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from llm_proxy import errors as E
from llm_proxy.formats import gemini as gm
from llm_proxy.formats.sse import SSEDecoder, payloads
from tests.fakes.gemini import FakeGemini

USER = [{"role": "user", "content": "Explain how AI works"}]
TEMP_PARAMS = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The city name, e.g. San Francisco"},
        "unit": {"type": ["string", "null"], "enum": ["c", "f"], "format": "unit"},
        "when": {
            "type": "object",
            "properties": {"day": {"type": "string"}},
            "additionalProperties": False,
        },
    },
    "required": ["location"],
    "additionalProperties": False,
}
DESCRIPTION = "Gets the current temperature for a given location."
TEMP: Any = {
    "type": "function",
    "function": {
        "name": "get_current_temperature", "description": DESCRIPTION, "parameters": TEMP_PARAMS
    },
}  # fmt: skip
TEMP_DECL = {
    "name": "get_current_temperature",
    "description": DESCRIPTION,
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city name, e.g. San Francisco"},
            "unit": {"type": "string", "nullable": True, "enum": ["c", "f"]},
            "when": {"type": "object", "properties": {"day": {"type": "string"}}},
        },
        "required": ["location"],
    },
}
CAT = "https://example.com/a/cat.PNG?x=1"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
RID = "mP9WafXnK8bL"  # a responseId
SIG = "CiQBjz1rX2Sig=="  # a thoughtSignature


def up(body: dict[str, Any], params: dict[str, Any] | None = None) -> Any:
    return orjson.loads(gm.to_upstream(body, "gemini-2.5-flash", params or {}, False))


def req(**kw: Any) -> dict[str, Any]:
    return {"model": "gem-pub", "messages": USER, **kw}


def user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


def text(t: str, **kw: Any) -> dict[str, Any]:
    return {"text": t, **kw}


def fc(name: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return {"functionCall": {"name": name, "args": args or {}}, **kw}


def fr(name: str, content: Any) -> dict[str, Any]:
    return {"functionResponse": {"name": name, "response": {"content": content}}}


def tool_call(id: str, name: str, args: str, **kw: Any) -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": args}, **kw}


# --- requests -------------------------------------------------------------------------------


def test_request_roles_system_merging_and_generation_config() -> None:
    body = req(
        messages=[
            {"role": "system", "content": "You are a cat."},
            {"role": "developer", "content": [{"type": "text", "text": "Your name is Neko."}]},
            {"role": "user", "content": "Hello"},
            user({"type": "text", "text": ""}, {"type": "text", "text": "there"}),
            {"role": "assistant", "content": "Great to meet you."},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": "I have two dogs."},
        ],
        temperature=0.1, top_p=0.9, top_k=40, max_tokens=500, stop="END", n=2, seed=7,
        presence_penalty=0.5, frequency_penalty=0.25, user="u-1", stream=True,
        stream_options={"include_usage": True}, parallel_tool_calls=True,
    )  # fmt: skip
    assert up(body) == {
        "systemInstruction": {"parts": [text("You are a cat."), text("Your name is Neko.")]},
        "contents": [
            {"role": "user", "parts": [text("Hello"), text("there")]},
            {"role": "model", "parts": [text("Great to meet you."), text("No.")]},
            {"role": "user", "parts": [text("I have two dogs.")]},
        ],
        "generationConfig": {
            "temperature": 0.1, "topP": 0.9, "topK": 40, "maxOutputTokens": 500,
            "stopSequences": ["END"], "candidateCount": 2, "seed": 7, "presencePenalty": 0.5,
            "frequencyPenalty": 0.25,
        },
    }  # fmt: skip
    assert gm.PATH.format(model="gemini-2.5-flash") == "/models/gemini-2.5-flash:generateContent"
    assert gm.STREAM_PATH.endswith(":streamGenerateContent?alt=sse")


def test_request_deployment_params_fill_gaps_and_native_settings_pass() -> None:
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}]
    params = {"temperature": 0.2, "max_tokens": 100, "stop": ["x"], "safetySettings": safety}
    out = up(req(max_completion_tokens=50, stop=["a", "b"]), params)
    assert out["generationConfig"] == {
        "temperature": 0.2,
        "maxOutputTokens": 50,
        "stopSequences": ["a", "b"],
    }
    assert out["safetySettings"] == safety
    assert up(req(), params)["generationConfig"]["maxOutputTokens"] == 100
    assert "generationConfig" not in up(req(n=1))


def test_request_images_files_and_audio_become_inline_and_file_data() -> None:
    def image(url: Any) -> dict[str, Any]:
        return {"type": "image_url", "image_url": url}

    pdf = {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}
    body = user(
        {"type": "text", "text": "Caption these."},
        image({"url": f"data:image/png;base64,{PNG}"}),
        image({"url": CAT, "detail": "low"}),
        image("https://example.com/photo"),
        {"type": "file", "file": pdf},
        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
    )
    assert up(req(messages=[body]))["contents"] == [
        {
            "role": "user",
            "parts": [
                text("Caption these."),
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
                {"fileData": {"mimeType": "image/png", "fileUri": CAT}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}},
            ],
        }
    ]  # fmt: skip


NAMED = {"type": "function", "function": {"name": "get_current_temperature"}}


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (None, None),
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (NAMED, {"mode": "ANY", "allowedFunctionNames": ["get_current_temperature"]}),
    ],
)
def test_request_tools_schemas_are_cleaned_and_tool_choice_maps(choice: Any, config: Any) -> None:
    empty = {"type": "object", "properties": {}}  # Gemini refuses it: sent without parameters
    bare = {"type": "function", "function": {"name": "now", "parameters": empty}}
    expected: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [text("Explain how AI works")]}],
        "tools": [{"functionDeclarations": [TEMP_DECL, {"name": "now"}]}],
    }
    if config:
        expected["toolConfig"] = {"functionCallingConfig": config}
    assert up(req(tools=[TEMP, bare], tool_choice=choice)) == expected
    assert "toolConfig" not in up(req(tool_choice="required"))  # no tools: nothing to choose


def test_request_tool_history_becomes_function_call_and_response_parts() -> None:
    calls = [
        tool_call("call_a", "get_current_temperature", '{"location": "London"}'),
        tool_call("call_b", "now", ""),
    ]
    signed = tool_call("call_c", "now", "{}", extra_content={"google": {"thought_signature": SIG}})
    msgs = [
        {"role": "user", "content": "Temperature in London, and the time?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temperature": 15, "unit": "c"}'},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "10:00"}]},
        {"role": "assistant", "tool_calls": [signed]},
        {"role": "tool", "tool_call_id": "call_c", "content": "[oops"},
    ]
    location = {"location": "London"}
    assert up(req(messages=msgs))["contents"] == [
        {"role": "user", "parts": [text("Temperature in London, and the time?")]},
        {
            "role": "model",
            "parts": [
                text("Let me check."),
                # No signature kept by the client: the first call gets the documented stand-in.
                fc("get_current_temperature", location, thoughtSignature=gm.DUMMY_SIGNATURE),
                fc("now"),
            ],
        },
        {
            "role": "user",
            "parts": [
                fr("get_current_temperature", {"temperature": 15, "unit": "c"}),
                fr("now", "10:00"),
            ],
        },
        {"role": "model", "parts": [fc("now", thoughtSignature=SIG)]},
        {"role": "user", "parts": [fr("now", "[oops")]},
    ]


def test_request_response_format_json_schema_and_json_object() -> None:
    step = {
        "type": "object",
        "title": "Step",
        "properties": {"explanation": {"type": "string"}},
        "required": ["explanation"],
    }
    schema = {  # as pydantic writes it: $defs/$ref, Optional as anyOf null, titles
        "$defs": {"Step": {**step, "additionalProperties": False}},
        "type": "object",
        "properties": {
            "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
            "final": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "answer"},
            "kind": {"const": "math"},
            "uri": {"type": "string", "format": "uri"},
            "loop": {"$ref": "#/components/Other"},
        },
        "required": ["steps", "final"],
        "additionalProperties": False,
    }
    rf = {"type": "json_schema", "json_schema": {"name": "math", "strict": True, "schema": schema}}
    assert up(req(response_format=rf))["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "object",
            "properties": {
                "steps": {"type": "array", "items": step},
                "final": {"type": "string", "description": "answer", "nullable": True},
                "kind": {"enum": ["math"]},
                "uri": {"type": "string"},
                "loop": {"type": "object"},
            },
            "required": ["steps", "final"],
        },
    }
    out = up(req(response_format={"type": "json_object"}))
    assert out["generationConfig"] == {"responseMimeType": "application/json"}
    assert "generationConfig" not in up(req(response_format={"type": "text"}))


@pytest.mark.parametrize(
    ("effort", "thinking"),
    [
        ("minimal", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("medium", {"thinkingBudget": 8192, "includeThoughts": True}),
        ("high", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("none", {"thinkingBudget": 0}),
    ],
)
def test_request_reasoning_effort_becomes_a_thinking_budget(effort: str, thinking: Any) -> None:
    assert up(req(reasoning_effort=effort))["generationConfig"] == {"thinkingConfig": thinking}
    native = {"thinkingLevel": "low"}  # a deployment's own thinkingConfig wins
    out = up(req(reasoning_effort=effort), {"thinkingConfig": native})
    assert out["generationConfig"] == {"thinkingConfig": native}


PART, CALL = "messages[0].content[0]", "messages[0].tool_calls[0].function"


def bad_call(function: dict[str, Any]) -> dict[str, Any]:
    return req(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": function}]}])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (req(reasoning_effort="max"), "reasoning_effort"),
        (req(messages=[{"role": "function", "content": "x"}]), "messages[0].role"),
        (req(messages=[{"role": "tool", "tool_call_id": "c"}]), "messages[0].tool_call_id"),
        (req(tools=[{"type": "web_search"}]), "tools[0]"),
        (req(tools=[TEMP], tool_choice={"type": "allowed_tools"}), "tool_choice"),
        (req(messages=[user({"type": "image_url", "image_url": {"url": "data:x,y"}})]), PART),
        (req(messages=[user({"type": "file", "file": {"file_id": "file-1"}})]), PART),
        (req(messages=[user({"type": "input_audio", "input_audio": {}})]), PART),
        (req(messages=[user({"type": "refusal", "refusal": "x"})]), PART),
        (bad_call({"name": "f", "arguments": "{no"}), f"{CALL}.arguments"),
        (bad_call({}), f"{CALL}.name"),
    ],
)  # fmt: skip
def test_request_what_gemini_cannot_express_is_a_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(E.InvalidRequestError) as e:
        up(body)
    assert e.value.param == param


# --- responses ------------------------------------------------------------------------------


def usage(prompt: int, completion: int, total: int, cached: int = 0, thoughts: int = 0) -> Any:
    return {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }  # fmt: skip


META = {"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10}


def response(*cands: dict[str, Any], **extra: Any) -> dict[str, Any]:
    head = {"modelVersion": "gemini-2.5-flash", "responseId": RID}
    return {"candidates": list(cands), "usageMetadata": META, **head, **extra}


def cand(*parts: dict[str, Any], finish: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}, **extra}
    return {**out, "finishReason": finish} if finish else out


def down(doc: dict[str, Any]) -> tuple[Any, Any]:
    raw, u = gm.from_upstream(orjson.dumps(doc), "gem-pub", 1700000000)
    return orjson.loads(raw), u


def completion(*choices: dict[str, Any], u: Any = None) -> dict[str, Any]:
    head = {"id": f"chatcmpl-{RID}", "object": "chat.completion", "created": 1700000000}
    return {**head, "model": "gem-pub", "choices": list(choices), "usage": u or usage(4, 6, 10)}


def choice(message: dict[str, Any], finish: str, index: int = 0) -> dict[str, Any]:
    msg = {"role": "assistant", "content": None, "refusal": None, **message}
    return {"index": index, "message": msg, "logprobs": None, "finish_reason": finish}


def test_response_text_thoughts_usage_and_several_candidates() -> None:
    meta = {
        "promptTokenCount": 4, "candidatesTokenCount": 680, "thoughtsTokenCount": 788,
        "totalTokenCount": 1472, "cachedContentTokenCount": 2,
    }  # fmt: skip
    doc = response(
        cand(text("Let me think.", thought=True), text("AI works by "), text("learning."), index=0),
        cand(text("Magic."), finish="MAX_TOKENS", index=1),
        usageMetadata=meta,
    )
    u = usage(4, 1468, 1472, cached=2, thoughts=788)
    answer = {"content": "AI works by learning.", "reasoning_content": "Let me think."}
    assert down(doc) == (
        completion(choice(answer, "stop"), choice({"content": "Magic."}, "length", 1), u=u),
        u,
    )


def test_response_function_calls_become_tool_calls_with_ids_and_signatures() -> None:
    doc = response(
        cand(
            text("Checking."),
            fc("get_current_temperature", {"location": "London"}, thoughtSignature=SIG),
            {"functionCall": {"name": "now"}},
        )
    )
    extra = {"extra_content": {"google": {"thought_signature": SIG}}}
    calls = [
        tool_call(f"call_{RID}_0", "get_current_temperature", '{"location":"London"}', **extra),
        tool_call(f"call_{RID}_1", "now", "{}"),
    ]
    message = {"content": "Checking.", "tool_calls": calls}
    assert down(doc)[0] == completion(choice(message, "tool_calls"))
    calls_only, _ = down(response(cand(fc("now"))))
    assert calls_only["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"), ("OTHER", "stop"), (None, "stop"),
    ],
)  # fmt: skip
def test_response_finish_reasons(reason: str | None, finish: str) -> None:
    body, _ = down(response(cand(text("x"), finish=reason)))
    assert body["choices"][0]["finish_reason"] == finish


def test_response_safety_blocks_are_content_filter_with_empty_content() -> None:
    ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]
    body, _ = down(response({"finishReason": "SAFETY", "index": 0, "safetyRatings": ratings}))
    assert body == completion(choice({"content": ""}, "content_filter"))
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": ratings},
        "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4},
        "responseId": RID,
    }
    expected = completion(choice({"content": ""}, "content_filter"), u=usage(4, 0, 4))
    assert down(blocked)[0] == expected


@pytest.mark.parametrize("raw", [b"no", b"[]", b'{"error": {"code": 500}}', b'{"candidates": 1}'])
def test_response_that_is_not_gemini_is_an_upstream_error(raw: bytes) -> None:
    with pytest.raises(E.UpstreamError):
        gm.from_upstream(raw, "gem-pub")


# --- streams --------------------------------------------------------------------------------


def sse(*docs: dict[str, Any]) -> bytes:
    """Framed as Google frames it: CRLF line ends."""
    return b"".join(b"data: " + orjson.dumps(d) + b"\r\n\r\n" for d in docs)


def decode(out: bytes) -> list[Any]:
    return [p.decode() if p == b"[DONE]" else orjson.loads(p) for p in payloads(out)]


def run(raw: bytes, wants_usage: bool = False) -> tuple[list[Any], gm.StreamState]:
    """Through the gateway's decoder, one read per event, then EOF."""
    state, dec = gm.new_stream_state("gem-pub", wants_usage, 1700000000), SSEDecoder()
    events = [e + b"\r\n\r\n" for e in raw.split(b"\r\n\r\n") if e]
    out = b"".join(gm.from_upstream_events(dec.segment(e), state) for e in events)
    return decode(out + gm.finish_stream(state, dec.flush())), state


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    c = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    head = {"id": f"chatcmpl-{RID}", "object": "chat.completion.chunk", "created": 1700000000}
    return {**head, "model": "gem-pub", "choices": [c]}


def event(*parts: dict[str, Any], finish: str | None = None, last: bool = False) -> Any:
    doc = {"candidates": [cand(*parts, finish=finish)], "modelVersion": "m", "responseId": RID}
    return {**doc, "usageMetadata": META} if last else doc


ROLE = chunk({"role": "assistant", "content": ""})
TEXT = sse(
    event(text("AI")), event(text(" works by")), event(text(" learning."), finish="STOP", last=True)
)
TRUNCATED = {"error": {
    "message": "The upstream stream ended before the response was complete.",
    "type": "upstream_error", "param": None, "code": "upstream_stream_truncated",
}}  # fmt: skip


def test_stream_text_with_usage_chunk_and_done_at_eof() -> None:
    chunks, state = run(TEXT, wants_usage=True)
    assert chunks == [
        ROLE, chunk({"content": "AI"}), chunk({"content": " works by"}),
        chunk({"content": " learning."}), chunk({}, "stop"),
        {**chunk({}), "choices": [], "usage": usage(4, 6, 10)}, "[DONE]",
    ]  # fmt: skip
    assert (state.done, state.chunks, state.usage) == (True, 3, usage(4, 6, 10))
    assert run(TEXT)[0][-2:] == [chunk({}, "stop"), "[DONE]"]


def test_stream_function_calls_arrive_whole_and_reassemble_with_the_sdk_helper() -> None:
    calls = event(fc("get_current_temperature", {"location": "London"}), fc("now"), finish="STOP")
    chunks, _ = run(sse(event(text("Let me check.")), calls))
    weather = tool_call(f"call_{RID}_0", "get_current_temperature", '{"location":"London"}')
    now = tool_call(f"call_{RID}_1", "now", "{}")
    assert chunks == [
        ROLE, chunk({"content": "Let me check."}),
        chunk({"tool_calls": [{"index": 0, **weather}]}),
        chunk({"tool_calls": [{"index": 1, **now}]}), chunk({}, "tool_calls"), "[DONE]",
    ]  # fmt: skip
    helper = ChatCompletionStreamState(input_tools=[TEMP])
    for c in chunks[:-1]:
        helper.handle_chunk(ChatCompletionChunk.model_validate(c))
    final = helper.get_final_completion().choices[0]
    assert (final.finish_reason, final.message.content) == ("tool_calls", "Let me check.")
    got = [(t.id, t.function.name, t.function.arguments) for t in final.message.tool_calls or []]
    assert got == [
        (f"call_{RID}_0", "get_current_temperature", '{"location":"London"}'),
        (f"call_{RID}_1", "now", "{}"),
    ]


def test_stream_thoughts_become_reasoning_content() -> None:
    raw = sse(
        event(text("Thinking about AI.", thought=True)),
        event(text("", thoughtSignature="c2ln")),
        event(text("Done."), finish="STOP"),
    )
    assert run(raw)[0] == [
        ROLE, chunk({"reasoning_content": "Thinking about AI."}), chunk({"content": "Done."}),
        chunk({}, "stop"), "[DONE]",
    ]  # fmt: skip


def test_stream_safety_stops_are_content_filter() -> None:
    safety = {"candidates": [{"finishReason": "SAFETY", "index": 0}], "responseId": RID}
    assert run(sse(safety))[0] == [ROLE, chunk({}, "content_filter"), "[DONE]"]
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "responseId": RID}
    assert run(sse(blocked))[0] == [ROLE, chunk({}, "content_filter"), "[DONE]"]


def test_stream_without_a_finish_reason_is_truncated_and_leftovers_are_used() -> None:
    chunks, state = run(TEXT.rsplit(b"data: ", 1)[0], wants_usage=True)  # the last chunk is lost
    assert chunks[-2:] == [chunk({"content": " works by"}), TRUNCATED]
    assert (state.done, state.usage) == (False, None)
    first = sse(event(text("AI"))).replace(b"\r\n", b"\n")
    state = gm.new_stream_state("gem-pub", False, 1700000000)
    gm.from_upstream_events(first, state)
    assert decode(gm.finish_stream(state, [b'{"candid'])) == [TRUNCATED]  # half an event
    state = gm.new_stream_state("gem-pub", False, 1700000000)
    gm.from_upstream_events(first, state)
    last = orjson.dumps(event(text("."), finish="STOP"))
    expected = [chunk({"content": "."}), chunk({}, "stop"), "[DONE]"]
    assert decode(gm.finish_stream(state, [last])) == expected


def test_stream_error_event_ends_the_stream_without_done() -> None:
    err = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    chunks, state = run(sse(event(text("AI")), err, event(text("late"))))
    error = body("The model is overloaded.", "service_unavailable_error", "overloaded")
    assert chunks == [ROLE, chunk({"content": "AI"}), error]
    assert state.failed and gm.finish_stream(state, []) == b""


# --- errors ---------------------------------------------------------------------------------


def google_error(code: int, status: str, message: str, details: Any = None) -> bytes:
    err = {"code": code, "message": message, "status": status}
    return orjson.dumps({"error": {**err, "details": details} if details else err})


def body(message: str, etype: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


BAD_KEY = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
RETRY = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "47.434392449s"}]
KEY_MSG = "API key not valid. Please pass a valid API key."
CTX = "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)."
MISSING = "models/gemini-9 is not found for API version v1beta, or is not supported for ..."
QUOTA = "You exceeded your current quota, please check your plan and billing details."
BUSY = "The model is overloaded. Please try again later."
DEADLINE = "Deadline expired before operation could complete."
INVALID, UPSTREAM, UNAVAILABLE = (
    "invalid_request_error",
    "upstream_error",
    "service_unavailable_error",
)
REFUSED = "The upstream provider refused the gateway's credentials (HTTP {})."


@pytest.mark.parametrize(
    ("status", "gstatus", "message", "details", "headers", "expected", "retry"),
    [
        (400, "INVALID_ARGUMENT", "Bad.", None, {}, body("Bad.", INVALID, None), None),
        (400, "FAILED_PRECONDITION", "Bad.", None, {}, body("Bad.", INVALID, None), None),
        (400, "INVALID_ARGUMENT", CTX, None, {},
         body(CTX, "invalid_request_error", "context_length_exceeded", "messages"), None),
        (400, "INVALID_ARGUMENT", KEY_MSG, BAD_KEY, {},
         body(REFUSED.format(401), "upstream_error", "upstream_auth_failed"), None),
        (401, "UNAUTHENTICATED", "No.", None, {},
         body(REFUSED.format(401), "upstream_error", "upstream_auth_failed"), None),
        (403, "PERMISSION_DENIED", "No.", None, {},
         body(REFUSED.format(403), "upstream_error", "upstream_auth_failed"), None),
        (404, "NOT_FOUND", MISSING, None, {},
         body(MISSING, "invalid_request_error", "model_not_found", "model"), None),
        (404, "NOT_FOUND", "Gone.", None, {}, body("Gone.", "not_found_error", None), None),
        (429, "RESOURCE_EXHAUSTED", QUOTA, RETRY, {"retry-after": "7"},
         body(QUOTA, "rate_limit_error", None), "7"),
        (429, "RESOURCE_EXHAUSTED", QUOTA, RETRY, {}, body(QUOTA, "rate_limit_error", None), "48"),
        (500, "INTERNAL", "Oops.", None, {}, body("Oops.", UPSTREAM, "upstream_error"), None),
        (503, "UNAVAILABLE", BUSY, None, {"Retry-After": "3"},
         body(BUSY, "service_unavailable_error", "overloaded"), "3"),
        (503, "UNAVAILABLE", "Down.", None, {}, body("Down.", UNAVAILABLE, None), None),
        (504, "DEADLINE_EXCEEDED", DEADLINE, None, {},
         body(DEADLINE, "timeout_error", "upstream_timeout"), None),
    ],
)  # fmt: skip
def test_error_bodies_map_to_gateway_errors(
    status: int, gstatus: str, message: str, details: Any, headers: dict[str, str],
    expected: Any, retry: str | None,
) -> None:  # fmt: skip
    err = gm.from_upstream_error(status, google_error(status, gstatus, message, details), headers)
    expected_status = {401: 502, 403: 502, 500: 502}.get(status, status)
    if details is BAD_KEY:
        expected_status = 502
    assert (err.status, err.body()) == (expected_status, expected)
    assert err.headers == ({"Retry-After": retry} if retry else {})


def test_error_with_the_clients_own_key_redaction_exact_status_and_other_bodies() -> None:
    raw = google_error(400, "INVALID_ARGUMENT", KEY_MSG, BAD_KEY)
    err = gm.from_upstream_error(400, raw, {}, client_key_forwarded=True)
    expected = body(KEY_MSG, "authentication_error", "invalid_api_key")
    assert (err.status, err.body()) == (401, expected)
    raw = google_error(400, "INVALID_ARGUMENT", "bad key AIzaSyA1b2C3d4E5f6 and hunter2hunter2")
    err = gm.from_upstream_error(418, raw, {}, exact_status=True, secrets=(b"hunter2hunter2",))
    assert (err.status, err.message) == (418, "bad key AIza*** and ***")
    html = gm.from_upstream_error(502, b"<html>Bad Gateway</html>", {})
    assert (html.status, html.message) == (502, "<html>Bad Gateway</html>")
    err = gm.from_upstream_error(503, b'{"detail": "busy"}', {})
    assert (err.status, err.body()) == (503, body("busy", "service_unavailable_error", None))
    listed = b"[" + google_error(429, "RESOURCE_EXHAUSTED", QUOTA, RETRY) + b"]"
    assert gm.from_upstream_error(429, listed, {}).headers == {"Retry-After": "48"}


# --- the fake Gemini server, driven in-process through the translator -----------------------


async def call(
    model: str, out: bytes, stream: bool = False, key: str | None = "AIza-test", query: str = "?"
) -> tuple[int, dict[str, str], bytes]:
    """One request to tests/fakes/gemini.py as ASGI: (status, headers, body)."""
    method = "streamGenerateContent" if stream else "generateContent"
    hdrs = [(b"content-type", b"application/json")]
    hdrs += [(b"x-goog-api-key", key.encode())] if key else []
    query = ("alt=sse" if stream else "") if query == "?" else query
    path = f"/v1beta/models/{model}:{method}"
    scope = {"type": "http", "method": "POST", "path": path, "query_string": query.encode()}
    inbox = [{"type": "http.request", "body": out, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    await FakeGemini()({**scope, "headers": hdrs}, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


async def roundtrip(model: str, body: dict[str, Any]) -> dict[str, Any]:
    status, _, raw = await call(model, gm.to_upstream(body, model, {}, False))
    assert status == 200, raw
    return orjson.loads(gm.from_upstream(raw, "gem-pub")[0])


async def stream(model: str, body: dict[str, Any]) -> list[Any]:
    status, headers, raw = await call(model, gm.to_upstream(body, model, {}, True), stream=True)
    assert (status, headers["content-type"]) == (200, "text/event-stream")
    assert raw.endswith(b"\r\n\r\n")
    state, dec = gm.new_stream_state("gem-pub", True), SSEDecoder()
    out = gm.from_upstream_events(dec.segment(raw), state)
    return decode(out + gm.finish_stream(state, dec.flush()))


async def test_fake_answers_text_images_json_and_thoughts() -> None:
    content = user(
        {"type": "text", "text": "Describe these"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}},
    )
    msgs = [{"role": "system", "content": "Be brief."}, content]
    out = await roundtrip("gemini-fake", req(messages=msgs, n=2, user="u"))
    answers = [c["message"]["content"] for c in out["choices"]]
    assert (answers, out["usage"]) == (["fake: Describe these [images: 2]"] * 2, usage(4, 10, 14))
    rf = {"type": "json_schema", "json_schema": {"name": "a", "schema": TEMP_PARAMS}}
    out = await roundtrip("gemini-fake", req(response_format=rf))
    assert out["choices"][0]["message"]["content"] == '{"answer": "yes", "confidence": 0.9}'
    out = await roundtrip("gemini-fake", req(reasoning_effort="low", max_tokens=3))
    message = {
        "role": "assistant",
        "content": "fake: Explain how",
        "refusal": None,
        "reasoning_content": "The user asked: Explain how AI works",
    }
    assert out["choices"][0] == choice(message, "length")


async def test_fake_tool_call_then_tool_result_round_trip() -> None:
    out = await roundtrip("gemini-tool", req(tools=[TEMP], tool_choice="auto"))
    msg = out["choices"][0]["message"]
    args = '{"city":"Paris","unit":"c"}'
    calls = [tool_call("call_fakeResp00000001_0", "get_current_temperature", args)]
    assert (msg["content"], msg["tool_calls"]) == ("Let me check.", calls)
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    result = {"role": "tool", "tool_call_id": calls[0]["id"], "content": "15 C"}
    out = await roundtrip(
        "gemini-tool", req(messages=[*USER, msg, result], tools=[TEMP], tool_choice="none")
    )
    assert out["choices"][0]["message"]["content"] == "fake: tool said 15 C"
    chunks = await stream("gemini-two-tools", req(tools=[TEMP]))
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2]]
    assert [d["tool_calls"][0]["function"] for d in deltas if "tool_calls" in d] == [
        {"name": "get_weather", "arguments": args},
        {"name": "get_time", "arguments": '{"city":"Paris"}'},
    ]
    assert chunks[-3]["choices"][0]["finish_reason"] == "tool_calls"


async def test_fake_streams_word_by_word_and_fails_on_command() -> None:
    chunks = await stream("gemini-fake", req())
    words = [c["choices"][0]["delta"].get("content") for c in chunks[1:-3]]
    assert words == ["fake:", " Explain", " how", " AI", " works"]
    head = {"id": "chatcmpl-fakeResp00000001", "created": 0}
    assert chunks[-3:] == [
        {**chunk({}, "stop"), **head},
        {**chunk({}), **head, "choices": [], "usage": usage(4, 5, 9)},
        "[DONE]",
    ]
    assert (await stream("gemini-truncate", req()))[-1] == TRUNCATED
    safety = await stream("gemini-safety", req())
    assert [c["choices"][0]["finish_reason"] for c in safety[:-2]] == [None, "content_filter"]
    blocked = await roundtrip("gemini-blocked", req())
    assert blocked["choices"][0]["finish_reason"] == "content_filter"
    status, headers, raw = await call(
        "gemini-fake", gm.to_upstream(req(), "m", {}, True), True, query=""
    )
    last = orjson.loads(raw)[-1]  # without alt=sse: one JSON array, as Google answers
    assert (status, headers["content-type"], last["candidates"][0]["finishReason"]) == (
        200, "application/json; charset=UTF-8", "STOP",
    )  # fmt: skip


def contents(*parts: dict[str, Any], role: str = "user", **extra: Any) -> bytes:
    return orjson.dumps({"contents": [{"role": role, "parts": list(parts)}], **extra})


OK = gm.to_upstream(req(), "m", {}, False)
RAW_TOOLS = [{"functionDeclarations": [{"name": "f", "parameters": TEMP_PARAMS}]}]


@pytest.mark.parametrize(
    ("model", "out", "key", "status", "says", "retry"),
    [
        ("gemini-fake", OK, None, 502, "upstream_auth_failed", None),
        ("gemini-fake", OK, "invalid-key", 502, "upstream_auth_failed", None),
        ("gemini-fake", b'{"model": "x", "contents": []}', "k", 400, 'name "model"', None),
        ("gemini-fake", b'{"contents": []}', "k", 400, "contents is not specified", None),
        ("gemini-fake", contents(text("x"), role="assistant"), "k", 400, "valid role", None),
        ("gemini-fake", contents(), "k", 400, "must not be empty", None),
        ("gemini-fake", contents({"text": "x", "type": "text"}), "k", 400, 'name "type"', None),
        ("gemini-fake", contents(fr("f", "x")), "k", 400, "number of function response", None),
        ("gemini-fake", contents(text("x"), tools=RAW_TOOLS), "k", 400, '"$schema"', None),
        ("gemini-error-404", OK, "k", 404, "model_not_found", None),
        ("gemini-error-429", OK, "k", 429, "exceeded your current quota", "7"),
        ("gemini-quota", OK, "k", 429, "exceeded your current quota", "7"),
        ("gemini-context", OK, "k", 400, "context_length_exceeded", None),
        ("gemini-error-500", OK, "k", 502, "upstream_error", None),
        ("gemini-error-503", OK, "k", 503, "overloaded", None),
    ],
)  # fmt: skip
async def test_fake_rejects_like_google_and_errors_map(
    model: str, out: bytes, key: str | None, status: int, says: str, retry: str | None
) -> None:
    got, headers, raw = await call(model, out, key=key)
    assert got >= 400 and orjson.loads(raw)["error"]["code"] == got
    err = gm.from_upstream_error(got, raw, headers)
    assert (err.status, err.headers.get("Retry-After")) == (status, retry)
    assert says in f"{err.code} {err.message}"


def test_any_object_schema_is_plain_json_mode() -> None:
    import orjson

    from llm_proxy.formats import gemini as g

    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "v", "schema": {"type": "object"}},
        },
    }
    cfg = orjson.loads(g.to_upstream(body, "m", {}, False))["generationConfig"]
    assert cfg == {"responseMimeType": "application/json"}
