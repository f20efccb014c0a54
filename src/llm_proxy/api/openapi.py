"""OpenAPI entries for the raw-ASGI hot paths (FastAPI cannot see them)."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "description": "OpenAI-shaped error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": ["string", "null"]},
                        },
                        "required": ["message", "type", "param", "code"],
                    }
                },
                "required": ["error"],
            }
        }
    },
}


def chat_completions_path() -> dict[str, Any]:
    """The /v1/chat/completions path item."""
    return {
        "/v1/chat/completions": {
            "post": {
                "tags": ["openai"],
                "summary": "Create a chat completion (OpenAI-compatible; plain or SSE stream)",
                "operationId": "createChatCompletion",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["model", "messages"],
                                "properties": {
                                    "model": {"type": "string"},
                                    "messages": {
                                        "type": "array",
                                        "minItems": 1,
                                        "items": {"type": "object"},
                                    },
                                    "stream": {"type": "boolean"},
                                },
                                "additionalProperties": True,
                            },
                            "example": {
                                "model": "mock/echo",
                                "messages": [{"role": "user", "content": "Hello"}],
                            },
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "A chat.completion object, or a text/event-stream of "
                        "chat.completion.chunk events ending with `data: [DONE]`.",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **{
                        code: _ERROR
                        for code in ("400", "401", "404", "408", "413", "429", "502", "503", "504")
                    },
                },
            }
        }
    }
