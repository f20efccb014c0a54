"""POST /v1/images/generations: OpenAI-style image servers (OpenAI, Azure, seed 003's Blackbox,
OpenRouter...) get the request as it came; `url` and `b64_json` answers come back untouched.

https://platform.openai.com/docs/api-reference/images/create
"""

from __future__ import annotations

from typing import Any

from llm_proxy.endpoints import checks as C
from llm_proxy.endpoints.op import Op, Target, openai_url, passthrough
from llm_proxy.formats import openai_chat
from llm_proxy.pipeline import Endpoint
from llm_proxy.runtime import Deployment

DEFAULT_MODEL = "dall-e-2"  # what OpenAI uses when the request names none


def validate(body: dict[str, Any]) -> dict[str, Any]:
    body.setdefault("model", DEFAULT_MODEL)
    C.model(body)
    C.string(body, "prompt", req=True, max_len=32000)
    C.integer(body, "n", 1, 10)
    C.one_of(body, "response_format", ("url", "b64_json"))
    for name in ("size", "quality", "style", "user", "background", "output_format"):
        C.string(body, name)
    C.integer(body, "output_compression", 0, 100)
    if body.get("stream"):
        raise C.bad("Streamed image generation is not supported here.", "stream")
    return body


def _usage(doc: dict[str, Any]) -> dict[str, Any] | None:
    """gpt-image models report tokens (input_tokens, output_tokens); DALL-E reports none."""
    u = doc.get("usage")
    if not isinstance(u, dict):
        return None
    p, c = u.get("input_tokens"), u.get("output_tokens")
    p, c = (p if isinstance(p, int) else 0), (c if isinstance(c, int) else 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


async def parse(raw: bytes, headers: dict[bytes, bytes]) -> tuple[dict[str, Any], Op]:
    doc = C.json_object(raw)
    had_model = "model" in doc
    body = validate(doc)
    # Without a model in the request, the upstream gets the body with the default filled in.
    sent, sent_doc = (raw, body) if had_model else (b"", body)

    def pick(d: Deployment) -> Target | None:
        url = openai_url(d, "/images/generations")
        if url is None:
            return None
        return Target(
            passthrough(sent, sent_doc, openai_chat.from_upstream_error, _usage), url, url
        )

    return body, Op("image generation", pick, units=body.get("n") or 1)


ENDPOINT = Endpoint(parse)
