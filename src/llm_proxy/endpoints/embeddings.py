"""POST /v1/embeddings: OpenAI-style servers (OpenAI, Azure, vLLM, Ollama...) get the request as
it came; Gemini and Cohere get it translated to their own embedding APIs and back.

OpenAI: https://platform.openai.com/docs/api-reference/embeddings/create
Gemini: https://ai.google.dev/api/embeddings (models/{model}:batchEmbedContents)
Cohere: https://docs.cohere.com/reference/embed (POST /v2/embed)
Token-array inputs are only meaningful to the tokenizer they came from, so only OpenAI-style
deployments take them; base64 output is little-endian float32, as OpenAI encodes it.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.endpoints import checks as C
from llm_proxy.endpoints.op import Op, Target, openai_url, passthrough
from llm_proxy.formats import WireFormat, cohere, gemini, openai_chat
from llm_proxy.pipeline import Endpoint
from llm_proxy.runtime import Deployment

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request


def validate(body: dict[str, Any]) -> dict[str, Any]:
    C.model(body)
    inp = C.required(body, "input")
    if isinstance(inp, str):
        pass
    elif isinstance(inp, list):
        if not inp:
            raise C.bad("'input' must not be an empty array.", "input")
        if len(inp) > MAX_INPUTS:
            raise C.bad(f"'input' may hold at most {MAX_INPUTS} items.", "input")
        if not (_all(inp, str) or _all(inp, int) or all(_ints(x) for x in inp)):
            raise C.bad(
                "'input' must be a string, an array of strings, an array of token ids, or an "
                "array of token-id arrays.",
                "input",
                "invalid_type",
            )
    else:
        raise C.bad("'input' must be a string or an array.", "input", "invalid_type")
    C.one_of(body, "encoding_format", ("float", "base64"))
    C.integer(body, "dimensions", 1, 65536)
    C.string(body, "user")
    if body.get("stream"):
        raise C.bad("Embeddings are not streamed.", "stream")
    return body


def _all(xs: list[Any], t: type) -> bool:
    return all(isinstance(x, t) and not isinstance(x, bool) for x in xs)


def _ints(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and _all(x, int)


def texts_of(body: dict[str, Any]) -> list[str] | None:
    """The inputs as texts; None for token arrays."""
    inp = body["input"]
    if isinstance(inp, str):
        return [inp]
    return list(inp) if _all(inp, str) else None


def encode(vector: list[float], fmt: str | None) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def _listing(model: str, vectors: list[list[float]], fmt: str | None, tokens: int) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode(v, fmt)}
                for i, v in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _estimate(texts: list[str]) -> int:
    return sum(max(1, len(t) // 4) for t in texts)


def _vectors(raw: bytes, key: str) -> list[list[float]]:
    doc = openai_chat.load_object(raw)
    found = doc.get(key)
    if key == "embeddings" and isinstance(found, dict):  # Cohere v2: by type
        found = found.get("float")
    if not isinstance(found, list):
        raise openai_chat.unexpected_body()
    out: list[list[float]] = []
    for item in found:
        values = item.get("values") if isinstance(item, dict) else item
        if not isinstance(values, list):
            raise openai_chat.unexpected_body()
        out.append(values)
    return out


def _gemini_wire(body: dict[str, Any], texts: list[str]) -> WireFormat:
    fmt, dims = body.get("encoding_format"), body.get("dimensions")

    def to_upstream(_: dict[str, Any], model: str, params: dict[str, Any], s: bool) -> bytes:
        one: dict[str, Any] = {"model": f"models/{model}"}
        if dims:
            one["outputDimensionality"] = dims
        reqs = [{**one, "content": {"parts": [{"text": t}]}} for t in texts]
        return orjson.dumps({"requests": reqs})

    def from_upstream(raw: bytes, public: str, created: int) -> tuple[bytes, Any]:
        vectors = _vectors(raw, "embeddings")
        n = _estimate(texts)  # Gemini's embedding answers carry no token counts
        return _listing(public, vectors, fmt, n), {"prompt_tokens": n, "total_tokens": n}

    return _json_wire("gemini-embed", to_upstream, from_upstream, gemini.from_upstream_error)


def _cohere_wire(body: dict[str, Any], texts: list[str]) -> WireFormat:
    fmt, dims = body.get("encoding_format"), body.get("dimensions")

    def to_upstream(_: dict[str, Any], model: str, params: dict[str, Any], s: bool) -> bytes:
        req: dict[str, Any] = {
            "model": model,
            "texts": texts,
            "input_type": params.get("input_type", "search_document"),
            "embedding_types": ["float"],
        }
        if dims:
            req["output_dimension"] = dims
        return orjson.dumps(req)

    def from_upstream(raw: bytes, public: str, created: int) -> tuple[bytes, Any]:
        doc = openai_chat.load_object(raw)
        vectors = _vectors(raw, "embeddings")
        billed = (doc.get("meta") or {}).get("billed_units") or {}
        n = billed.get("input_tokens")
        n = n if isinstance(n, int) else _estimate(texts)
        return _listing(public, vectors, fmt, n), {"prompt_tokens": n, "total_tokens": n}

    return _json_wire("cohere-embed", to_upstream, from_upstream, cohere.from_upstream_error)


def _json_wire(name: str, to_up: Any, from_up: Any, error: Any) -> WireFormat:
    def no_stream(*_: Any) -> Any:
        raise E.InvalidRequestError("Embeddings are not streamed.", param="stream")

    return WireFormat(
        name=name,
        path="",
        stream_path="",
        to_upstream=to_up,
        from_upstream=from_up,
        new_stream_state=no_stream,
        from_upstream_events=no_stream,
        finish_stream=no_stream,
        from_upstream_error=error,
    )


def _usage(doc: dict[str, Any]) -> dict[str, Any] | None:
    u = doc.get("usage")
    return u if isinstance(u, dict) else None


def _picker(raw: bytes, body: dict[str, Any]) -> Any:
    texts = texts_of(body)

    def pick(d: Deployment) -> Target | None:
        fmt = d.provider.format
        if fmt == "openai":
            url = openai_url(d, "/embeddings")
            if url is None:
                return None
            wire = passthrough(raw, body, openai_chat.from_upstream_error, _usage)
            return Target(wire, url, url)
        if texts is None:
            return None
        if fmt == "gemini" and d.provider.type == "gemini":
            url = d.url.replace(":generateContent", ":batchEmbedContents")
            return Target(_gemini_wire(body, texts), url, url)
        if fmt == "cohere":
            url = d.url.replace("/v2/chat", "/v2/embed")
            return Target(_cohere_wire(body, texts), url, url)
        return None

    return pick


async def parse(raw: bytes, headers: dict[bytes, bytes]) -> tuple[dict[str, Any], Op]:
    body = validate(C.json_object(raw))
    return body, Op("embeddings", _picker(raw, body))


ENDPOINT = Endpoint(parse)
