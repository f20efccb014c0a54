"""Bedrock Converse translator, on payloads shaped like AWS's doc examples.

Sources (request/response/stream/error shapes and example values):
  Converse request/response            https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
  Using the Converse API               https://docs.aws.amazon.com/bedrock/latest/userguide/conversation-inference-call.html
  ConverseStream events                https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html
  Stream event types (strands)         https://strandsagents.com/docs/api/python/strands.types.streaming/
  Event stream encoding                https://docs.aws.amazon.com/lexv2/latest/dg/event-stream-encoding.html
  Error codes                          https://docs.aws.amazon.com/bedrock/latest/userguide/troubleshooting-api-error-codes.html
  Converse errors (ModelNotReady, ...) https://docs.rs/aws-sdk-bedrockruntime/latest/aws_sdk_bedrockruntime/operation/converse/enum.ConverseError.html
  ValidationException body             https://docs.aws.amazon.com/botocore/latest/reference/services/bedrock-runtime/client/exceptions/ValidationException.html
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from llm_proxy import errors as E
from llm_proxy.formats import bedrock_converse as bc
from llm_proxy.formats.eventstream import EventStreamDecoder, encode_message
from llm_proxy.formats.sse import payloads

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "object",
    "properties": {"sign": {"type": "string", "description": "The call sign for the station."}},
    "required": ["sign"],
}
TOP_SONG = {
    "type": "function",
    "function": {
        "name": "top_song",
        "description": "Get the most popular song played on a radio station.",
        "parameters": WEATHER,
    },
}


def _req(body: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = orjson.loads(bc.to_upstream(body, MODEL, params or {}, False))
    assert isinstance(doc, dict)
    return doc


# --- requests -------------------------------------------------------------------------------


def test_request_whole_value() -> None:
    body = {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are an app that creates playlists."},
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "What is the most popular song on WZPZ?"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {
                        "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                        "type": "function",
                        "function": {"name": "top_song", "arguments": '{"sign":"WZPZ"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                "content": '{"song":"Elemental Hotel","artist":"8 Storey Hike"}',
            },
            {"role": "user", "content": "Thanks"},
        ],
        "max_tokens": 512,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": "END",
        "tools": [TOP_SONG],
        "tool_choice": "auto",
    }
    assert _req(body) == {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "What is the most popular song on WZPZ?"},
                    {"text": "And this?"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"text": "Let me look."},
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                            "name": "top_song",
                            "input": {"sign": "WZPZ"},
                        }
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                            "content": [
                                {"json": {"song": "Elemental Hotel", "artist": "8 Storey Hike"}}
                            ],
                        }
                    },
                    {"text": "Thanks"},
                ],
            },
        ],
        "system": [{"text": "You are an app that creates playlists."}, {"text": "Be brief."}],
        "inferenceConfig": {
            "maxTokens": 512,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "top_song",
                        "description": "Get the most popular song played on a radio station.",
                        "inputSchema": {"json": WEATHER},
                    }
                }
            ],
            "toolChoice": {"auto": {}},
        },
    }


def test_params_fill_gaps_and_native_fields() -> None:
    params = {
        "max_tokens": 100,
        "temperature": 0.1,
        "additionalModelRequestFields": {"top_k": 200},
        "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
    }
    body = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.7}
    got = _req(body, params)
    assert got["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.7}
    assert got["additionalModelRequestFields"] == {"top_k": 200}
    assert got["guardrailConfig"]["guardrailIdentifier"] == "gr-1"
    assert "model" not in got and "stream" not in got
    tool_msg = {"role": "tool", "tool_call_id": "t1", "content": "sunny"}
    blocks = _req({"messages": [tool_msg]})["messages"][0]["content"]
    assert blocks == [{"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}}]


@pytest.mark.parametrize(
    ("choice", "want"),
    [
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "top_song"}}, {"tool": {"name": "top_song"}}),
        (None, None),
    ],
)
def test_tool_choice(choice: Any, want: Any) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [TOP_SONG]}
    if choice is not None:
        body["tool_choice"] = choice
    cfg = _req(body)["toolConfig"]
    assert cfg.get("toolChoice") == want
    assert [t["toolSpec"]["name"] for t in cfg["tools"]] == ["top_song"]


def test_tool_choice_none_omits_tool_config() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [TOP_SONG],
            "tool_choice": "none"}  # fmt: skip
    assert "toolConfig" not in _req(body)


def test_response_format_is_a_forced_tool() -> None:
    rf = {"type": "json_schema", "json_schema": {"name": "song", "schema": WEATHER}}
    body = {"messages": [{"role": "user", "content": "hi"}], "response_format": rf}
    assert _req(body)["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": bc.JSON_TOOL,
                    "description": "Respond with JSON that matches inputSchema.",
                    "inputSchema": {"json": WEATHER},
                }
            }
        ],
        "toolChoice": {"tool": {"name": bc.JSON_TOOL}},
    }
    with_tools = _req({**body, "tools": [TOP_SONG]})["toolConfig"]
    assert with_tools["toolChoice"] == {"any": {}}
    assert [t["toolSpec"]["name"] for t in with_tools["tools"]] == ["top_song", bc.JSON_TOOL]
    reserved = {"type": "function", "function": {"name": bc.JSON_TOOL}}
    with pytest.raises(E.InvalidRequestError, match="reserved"):
        _req({**body, "tools": [reserved]})


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        (
            {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]},
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [
                {"id": "a", "function": {"name": "f", "arguments": "[1]"}}]}]},
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)  # fmt: skip
def test_request_errors(body: dict[str, Any], param: str) -> None:
    full = {"messages": [{"role": "user", "content": "hi"}], **body}
    with pytest.raises(E.InvalidRequestError) as info:
        _req(full)
    assert info.value.status == 400
    assert info.value.param == param


def test_pdf_becomes_a_document() -> None:
    part = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x"}}
    blocks = _req({"messages": [{"role": "user", "content": [part]}]})["messages"][0]["content"]
    assert blocks == [
        {"document": {"format": "pdf", "name": "document 1", "source": {"bytes": "JVBERi0x"}}}
    ]


# --- responses ------------------------------------------------------------------------------


def _resp(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    raw, usage = bc.from_upstream(orjson.dumps(doc), "claude", 1700000000)
    out = orjson.loads(raw)
    assert out.pop("id").startswith("chatcmpl-")
    return out, usage


def test_response_whole_value() -> None:
    doc = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [{"text": "The most popular song on WZPZ is Elemental Hotel."}],
            }
        },
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 125,
            "outputTokens": 60,
            "totalTokens": 185,
            "cacheReadInputTokens": 0,
        },
        "metrics": {"latencyMs": 1175},
    }
    out, usage = _resp(doc)
    assert out == {
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "The most popular song on WZPZ is Elemental Hotel.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 125,
            "completion_tokens": 60,
            "total_tokens": 185,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    assert usage == out["usage"]


def test_response_tool_use_and_reasoning() -> None:
    doc = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "Need the tool.",
                                                            "signature": "sig"}}},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "top_song",
                                 "input": {"sign": "WZPZ"}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 45,
                  "cacheReadInputTokens": 20, "cacheWriteInputTokens": 10},
    }  # fmt: skip
    out, usage = _resp(doc)
    msg = out["choices"][0]["message"]
    assert msg == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "reasoning_content": "Need the tool.",
        "tool_calls": [
            {
                "id": "tooluse_1",
                "type": "function",
                "function": {"name": "top_song", "arguments": '{"sign":"WZPZ"}'},
            }
        ],
    }
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert usage == {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45,
                     "prompt_tokens_details": {"cached_tokens": 20}}  # fmt: skip


def test_response_json_tool_is_content() -> None:
    use = {"toolUseId": "t", "name": bc.JSON_TOOL, "input": {"sign": "WZPZ"}}
    doc = {"output": {"message": {"role": "assistant", "content": [{"toolUse": use}]}},
           "stopReason": "tool_use"}  # fmt: skip
    out, usage = _resp(doc)
    assert out["choices"][0]["message"]["content"] == '{"sign":"WZPZ"}'
    assert out["choices"][0]["finish_reason"] == "stop"
    assert usage is None


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
     ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter")],
)  # fmt: skip
def test_stop_reasons(reason: str, finish: str) -> None:
    doc = {"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
           "stopReason": reason}  # fmt: skip
    assert _resp(doc)[0]["choices"][0]["finish_reason"] == finish


def test_bad_bodies() -> None:
    with pytest.raises(E.UpstreamError):
        bc.from_upstream(b"not json", "m")
    with pytest.raises(E.UpstreamError):
        bc.from_upstream(b'{"output":{}}', "m")


# --- streams --------------------------------------------------------------------------------


def _event(kind: str, doc: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps({**doc, "p": "abcdefgh"}))  # "p" is padding


def _exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json",
               ":message-type": "exception"}  # fmt: skip
    return encode_message(headers, orjson.dumps({"message": message}))


TOOL_STREAM = [
    _event("messageStart", {"role": "assistant"}),
    _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me "}}),
    _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "check."}}),
    _event("contentBlockStop", {"contentBlockIndex": 0}),
    _event("contentBlockStart", {"contentBlockIndex": 1, "start": {
        "toolUse": {"toolUseId": "tooluse_a", "name": "top_song"}}}),
    _event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"si'}}}),
    _event("contentBlockDelta", {"contentBlockIndex": 1,
                                 "delta": {"toolUse": {"input": 'gn":"WZPZ"}'}}}),
    _event("contentBlockStop", {"contentBlockIndex": 1}),
    _event("contentBlockStart", {"contentBlockIndex": 2, "start": {
        "toolUse": {"toolUseId": "tooluse_b", "name": "now"}}}),
    _event("contentBlockStop", {"contentBlockIndex": 2}),
    _event("messageStop", {"stopReason": "tool_use"}),
    _event("metadata", {"usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42},
                        "metrics": {"latencyMs": 900}}),
]  # fmt: skip


def _run(wire: bytes, size: int, wants_usage: bool = False) -> tuple[list[bytes], bc.StreamState]:
    state = bc.new_stream_state("claude", wants_usage, 1700000000)
    dec = bc.DECODER()
    out = b""
    for i in range(0, len(wire), size):
        seg = dec.segment(wire[i : i + size])
        if seg:
            out += bc.from_upstream_events(seg, state)
    out += bc.finish_stream(state, dec.flush())
    return payloads(out), state


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_stream_tool_use_reassembles(size: int) -> None:
    chunks, state = _run(b"".join(TOOL_STREAM), size, wants_usage=True)
    assert chunks[-1] == b"[DONE]"
    docs = [orjson.loads(c) for c in chunks[:-1]]
    assert docs[-1]["choices"] == []
    assert docs[-1]["usage"] == {"prompt_tokens": 30, "completion_tokens": 12,
                                 "total_tokens": 42, "prompt_tokens_details": {"cached_tokens": 0}}  # fmt: skip
    assert state.usage == docs[-1]["usage"] and state.chunks == len(TOOL_STREAM)
    assert len({d["id"] for d in docs}) == 1
    assert docs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    helper = ChatCompletionStreamState()
    for d in docs[:-1]:
        helper.handle_chunk(ChatCompletionChunk.model_validate(d))
    final = helper.get_final_completion().choices[0]
    assert (final.finish_reason, final.message.content) == ("tool_calls", "Let me check.")
    got = [(t.id, t.function.name, t.function.arguments) for t in final.message.tool_calls or []]
    assert got == [("tooluse_a", "top_song", '{"sign":"WZPZ"}'), ("tooluse_b", "now", "{}")]


def test_stream_text_reasoning_and_json_tool() -> None:
    wire = b"".join(
        [
            _event("messageStart", {"role": "assistant"}),
            _event("contentBlockDelta", {"contentBlockIndex": 0,
                                         "delta": {"reasoningContent": {"text": "Hmm."}}}),
            _event("contentBlockDelta", {"contentBlockIndex": 0,
                                         "delta": {"reasoningContent": {"signature": "s"}}}),
            _event("contentBlockStart", {"contentBlockIndex": 1, "start": {
                "toolUse": {"toolUseId": "j", "name": bc.JSON_TOOL}}}),
            _event("contentBlockDelta", {"contentBlockIndex": 1,
                                         "delta": {"toolUse": {"input": '{"a":1}'}}}),
            _event("contentBlockStop", {"contentBlockIndex": 1}),
            _event("messageStop", {"stopReason": "tool_use"}),
            _event("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}}),
        ]
    )  # fmt: skip
    chunks, _ = _run(wire, 50)
    deltas = [(orjson.loads(c)["choices"][0]["delta"], orjson.loads(c)["choices"][0]
               ["finish_reason"]) for c in chunks[:-1]]  # fmt: skip
    assert deltas == [
        ({"role": "assistant", "content": ""}, None),
        ({"reasoning_content": "Hmm."}, None),
        ({"content": '{"a":1}'}, None),
        ({}, "stop"),
    ]
    assert chunks[-1] == b"[DONE]"


def test_stream_exception_event() -> None:
    wire = b"".join(
        [
            TOOL_STREAM[0],
            TOOL_STREAM[1],
            _exception("throttlingException", "Too many requests, please wait."),
            TOOL_STREAM[2],
        ]
    )
    chunks, state = _run(wire, 1000)
    assert state.done
    err = orjson.loads(chunks[-1])["error"]
    assert err["type"] == "rate_limit_error"
    assert err["message"] == "Too many requests, please wait."
    assert b"[DONE]" not in chunks and len(chunks) == 3


def test_stream_model_stream_error() -> None:
    chunks, _ = _run(_exception("modelStreamErrorException", "boom"), 1000)
    assert orjson.loads(chunks[0])["error"]["code"] == "model_error"


def test_stream_truncated() -> None:
    chunks, _ = _run(b"".join(TOOL_STREAM[:5]), 1000)
    assert orjson.loads(chunks[-1])["error"]["code"] == "upstream_stream_truncated"
    # messageStop arrived, metadata did not: a complete answer without usage.
    chunks, state = _run(b"".join(TOOL_STREAM[:-1]), 1000, wants_usage=True)
    assert chunks[-1] == b"[DONE]"
    assert orjson.loads(chunks[-2])["choices"][0]["finish_reason"] == "tool_calls"
    assert state.usage is None
    # Half a message at EOF is dropped, so this is truncated too.
    chunks, _ = _run(b"".join(TOOL_STREAM[:3]) + TOOL_STREAM[3][:9], 1000)
    assert orjson.loads(chunks[-1])["error"]["code"] == "upstream_stream_truncated"


def test_stream_corrupt_message() -> None:
    bad = bytearray(TOOL_STREAM[1])
    bad[-8] ^= 1
    state = bc.new_stream_state("claude", False)
    out = payloads(bc.from_upstream_events(bytes(bad), state))
    assert orjson.loads(out[0])["error"]["code"] == "upstream_stream_corrupt"
    assert bc.from_upstream_events(TOOL_STREAM[2], state) == b""
    assert bc.finish_stream(state, []) == b""


def test_decoder_is_the_event_stream_one() -> None:
    assert bc.DECODER is EventStreamDecoder
    assert bc.PATH.format(model=MODEL) == f"/model/{MODEL}/converse"
    assert bc.STREAM_PATH.format(model=MODEL) == f"/model/{MODEL}/converse-stream"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "etype", "message", "cls", "out_status", "code"),
    [
        (429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "Too many requests, please wait before trying again.", E.RateLimitError, 429, None),
        (400, "ValidationException", "Input is too long for requested model.",
         E.ContextLengthExceededError, 400, "context_length_exceeded"),
        (400, "ValidationException", "The provided model identifier is invalid.",
         E.InvalidRequestError, 400, None),
        (403, "AccessDeniedException", "You don't have access to the model.",
         E.UpstreamError, 502, "upstream_auth_failed"),
        (403, "UnrecognizedClientException", "The security token included in the request is "
         "invalid.", E.UpstreamError, 502, "upstream_auth_failed"),
        (404, "ResourceNotFoundException", "Model not found.", E.ModelNotFoundError, 404,
         "model_not_found"),
        (503, "ServiceUnavailableException", "Service unavailable.", E.ServiceUnavailableError,
         503, None),
        (429, "ModelNotReadyException", "Model is not ready.", E.ServiceUnavailableError, 503,
         "model_not_ready"),
        (500, "InternalServerException", "Internal error.", E.UpstreamError, 502, None),
        (424, "ModelErrorException", "The model failed.", E.UpstreamError, 502, "model_error"),
        (408, "ModelTimeoutException", "Timed out.", E.UpstreamTimeoutError, 504, None),
    ],
)  # fmt: skip
def test_errors(
    status: int, etype: str, message: str, cls: type, out_status: int, code: str | None
) -> None:
    raw = orjson.dumps({"message": message})
    err = bc.from_upstream_error(status, raw, {"x-amzn-ErrorType": etype})
    assert type(err) is cls
    assert err.status == out_status
    if code:
        assert err.code == code
    if out_status != 502 or code == "model_error":
        assert err.message == message


def test_error_details() -> None:
    raw = b'{"message":"Too many tokens","__type":"com.amazon.coral#ThrottlingException"}'
    err = bc.from_upstream_error(429, raw, {"Retry-After": "3"})
    assert isinstance(err, E.RateLimitError) and err.headers == {"Retry-After": "3"}
    forwarded = bc.from_upstream_error(
        403, b'{"message":"no"}', {"x-amzn-errortype": "AccessDeniedException"}, True
    )
    assert isinstance(forwarded, E.PermissionDeniedError)
    exact = bc.from_upstream_error(
        500, b'{"message":"x"}', {"x-amzn-errortype": "InternalServerException"},
        exact_status=True,
    )  # fmt: skip
    assert exact.status == 500
    secret = bc.from_upstream_error(400, b'{"message":"bad key sk-abcdefghijkl"}', {})
    assert "abcdefghijkl" not in secret.message
    plain = bc.from_upstream_error(502, b"<html>Bad Gateway</html>", {})
    assert plain.status == 502


@pytest.mark.parametrize(
    "raw", [b'{"output": []}', b"[1, 2]", b"not json", b'{"output": {"message": 1}}']
)
def test_malformed_converse_bodies_are_upstream_errors(raw: bytes) -> None:
    from llm_proxy import errors as E
    from llm_proxy.formats import bedrock_converse as bc

    with pytest.raises(E.UpstreamError) as e:
        bc.from_upstream(raw, "m")
    assert e.value.status == 502
