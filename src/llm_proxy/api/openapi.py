"""OpenAPI entries for the raw-ASGI pipeline endpoints (FastAPI cannot see them).

Request schemas name what the gateway itself checks (the upstream checks the rest), with an
example that runs against the built-in mock provider; response schemas name the fields every
answer has. Errors are OpenAI-shaped everywhere (Anthropic's and seed 001's shapes carry the
same keys inside `error`).
"""

from __future__ import annotations

from typing import Any

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "integer", "null"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}
_ERROR = {
    "description": "An error: OpenAI's shape (`error.message/type/param/code`).",
    "content": {"application/json": {"schema": _ERROR_SCHEMA}},
}
_STATUSES = ("400", "401", "403", "404", "405", "408", "409", "413", "429", "502", "503", "504")
_OBJ: dict[str, Any] = {"type": "object"}
# One server-sent event (OpenAPI 3.1 describes a text/event-stream by its events).
_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
    },
}
_AUDIO = ("audio/mpeg", "audio/opus", "audio/aac", "audio/flac", "audio/wav", "audio/pcm")
_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}
_MESSAGES = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["role"],
        "properties": {"role": _STR, "content": {"type": ["string", "array", "null"]}},
    },
}


def _req(required: list[str], props: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": required,
                    "properties": props,
                    "additionalProperties": True,
                },
                "example": example,
            }
        },
    }


def _ok(description: str, required: list[str], sse: bool = False, **props: Any) -> dict[str, Any]:
    content: dict[str, Any] = {
        "application/json": {
            "schema": {"type": "object", "required": required, "properties": props}
        }
    }
    if sse:
        content["text/event-stream"] = {"schema": _EVENT}
    return {"description": description, "content": content}


def _op(
    op_id: str, tag: str, summary: str, body: dict[str, Any], ok: dict[str, Any]
) -> dict[str, Any]:
    return {
        "post": {
            "tags": [tag],
            "summary": summary,
            "operationId": op_id,
            "security": [{"bearer": []}],
            "requestBody": body,
            "responses": {"200": ok, **dict.fromkeys(_STATUSES, _ERROR)},
        }
    }


_CHAT_REQ = _req(
    ["model", "messages"],
    {"model": _STR, "messages": _MESSAGES, "stream": _BOOL, "max_tokens": _INT},
    {"model": "mock/echo", "messages": [{"role": "user", "content": "Hello"}]},
)
_CHAT_OK = _ok(
    "A chat.completion object, or (stream) a text/event-stream of chat.completion.chunk "
    "events ending with `data: [DONE]`.",
    ["id", "object", "choices"],
    sse=True,
    id=_STR,
    object=_STR,
    choices={"type": "array"},
    usage={"type": ["object", "null"]},
)


def _paths() -> dict[str, Any]:
    return {
        "/v1/chat/completions": _op(
            "createChatCompletion",
            "openai",
            "Create a chat completion (OpenAI-compatible; plain or SSE stream)",
            _CHAT_REQ,
            _CHAT_OK,
        ),
        "/v1/completions": _op(
            "createCompletion",
            "openai",
            "Create a text completion (legacy; translated to chat where the upstream lacks it)",
            _req(
                ["model", "prompt"],
                {"model": _STR, "prompt": {}, "max_tokens": _INT, "stream": _BOOL},
                {"model": "mock/echo", "prompt": "Say hello", "max_tokens": 16},
            ),
            _ok(
                "A text_completion object, or its SSE stream ending with `data: [DONE]`.",
                ["id", "object", "choices"],
                sse=True,
                id=_STR,
                object=_STR,
                choices={"type": "array"},
            ),
        ),
        "/v1/embeddings": _op(
            "createEmbedding",
            "openai",
            "Create embeddings (float or base64; string, list or token-array input)",
            _req(
                ["model", "input"],
                {"model": _STR, "input": {}, "encoding_format": {"enum": ["float", "base64"]}},
                {"model": "mock/echo", "input": ["first text", "second text"]},
            ),
            _ok("A list of embeddings.", ["object", "data"], object=_STR, data={"type": "array"}),
        ),
        "/v1/images/generations": _op(
            "createImage",
            "openai",
            "Generate images (url or b64_json)",
            _req(
                ["prompt"],
                {"model": _STR, "prompt": _STR, "n": _INT, "response_format": _STR},
                {"model": "mock/echo", "prompt": "A lighthouse at dawn", "n": 1},
            ),
            _ok("Generated images.", ["data"], created=_INT, data={"type": "array"}),
        ),
        "/v1/audio/speech": _op(
            "createSpeech",
            "openai",
            "Text to speech: the audio bytes are relayed as the upstream produces them",
            _req(
                ["model", "input", "voice"],
                {"model": _STR, "input": _STR, "voice": _STR, "response_format": _STR},
                {"model": "mock/echo", "input": "Hello there", "voice": "alloy"},
            ),
            {
                "description": "Audio bytes (audio/mpeg, or the format asked for).",
                "content": {
                    t: {"schema": {"type": "string", "format": "binary"}}
                    for t in (*_AUDIO, "application/octet-stream")
                },
            },
        ),
        "/v1/audio/transcriptions": _op(
            "createTranscription",
            "openai",
            "Speech to text (multipart/form-data upload: `file` and `model`)",
            {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file", "model"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "model": _STR,
                                "response_format": _STR,
                                "language": _STR,
                            },
                        }
                    }
                },
            },
            {
                "description": "The transcript (JSON, or text for the text formats).",
                "content": {"application/json": {"schema": _OBJ}, "text/plain": {"schema": _STR}},
            },
        ),
        "/v1/responses": _op(
            "createResponse",
            "openai",
            "Create a model response (OpenAI Responses API, stateless; plain or typed SSE events)",
            _req(
                ["model", "input"],
                {"model": _STR, "input": {}, "instructions": _STR, "stream": _BOOL},
                {"model": "mock/echo", "input": "Hello", "instructions": "Be brief."},
            ),
            _ok(
                "A response object, or the stream of typed events (response.created ... "
                "response.completed).",
                ["id", "object", "output"],
                sse=True,
                id=_STR,
                object=_STR,
                output={"type": "array"},
            ),
        ),
        "/v1/messages": _op(
            "createMessage",
            "anthropic",
            "Create a message (Anthropic Messages API for any routed model; plain or SSE)",
            _req(
                ["model", "max_tokens", "messages"],
                {"model": _STR, "max_tokens": _INT, "messages": _MESSAGES, "stream": _BOOL},
                {
                    "model": "mock/echo",
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": "Hello"}],
                },
            ),
            _ok(
                "A message object, or the event stream (message_start ... message_stop).",
                ["id", "type", "role", "content"],
                sse=True,
                id=_STR,
                type=_STR,
                role=_STR,
                content={"type": "array"},
            ),
        ),
        "/v1/messages/count_tokens": _op(
            "countMessageTokens",
            "anthropic",
            "Count a Messages request's input tokens (Anthropic's count, or the gateway's "
            "estimate for other models)",
            _req(
                ["model", "messages"],
                {"model": _STR, "messages": _MESSAGES},
                {"model": "mock/echo", "messages": [{"role": "user", "content": "Hello"}]},
            ),
            _ok("The count.", ["input_tokens"], input_tokens=_INT),
        ),
        "/proxy": _op("proxyChat", "seeds", "Seed 004: a chat completion", _CHAT_REQ, _CHAT_OK),
        "/proxy/stream": _op(
            "proxyChatStream", "seeds", "Seed 004: a streamed chat completion", _CHAT_REQ, _CHAT_OK
        ),
        "/api/v1/inference": _op(
            "inference", "seeds", "Seed 001: a chat completion", _CHAT_REQ, _CHAT_OK
        ),
        "/api/v1/inference/stream": _op(
            "inferenceStream",
            "seeds",
            "Seed 001: a streamed chat completion",
            _CHAT_REQ,
            _CHAT_OK,
        ),
    }


def pipeline_paths() -> dict[str, Any]:
    """The path items of every endpoint the call pipeline serves."""
    return _paths()


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Every operation documents the gateway's errors: auth (401/403), not found, conflicts,
    limits and an unavailable store, all in OpenAI's shape; FastAPI's 422 is our 400."""
    for item in schema.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            responses.pop("422", None)
            for code in _STATUSES:
                responses.setdefault(code, _ERROR)
    schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
    return schema
