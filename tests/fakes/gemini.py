"""A fake Gemini API server (raw ASGI) that validates like the Generative Language API (v1beta)
and fails on command.

Wire format from Google's docs: "Generating content" https://ai.google.dev/api/generate-content
(GenerateContentRequest/Response, Candidate, FinishReason, PromptFeedback, UsageMetadata),
"Text generation" https://ai.google.dev/gemini-api/docs/text-generation (streaming, alt=sse),
"Function calling" https://ai.google.dev/gemini-api/docs/function-calling, "Structured output"
https://ai.google.dev/gemini-api/docs/structured-output, "Image understanding"
https://ai.google.dev/gemini-api/docs/image-understanding (inlineData, fileData), "Thinking"
https://ai.google.dev/gemini-api/docs/thinking, "Troubleshooting" (error codes)
https://ai.google.dev/gemini-api/docs/troubleshooting, and error bodies as Google sends them
(google.rpc.Status with ErrorInfo API_KEY_INVALID / RetryInfo details, e.g.
https://github.com/google-gemini/gemini-cli/issues/6678).

Served: POST /v1beta/models/{model}:generateContent and
POST /v1beta/models/{model}:streamGenerateContent?alt=sse, and the embeddings methods
("Embeddings" https://ai.google.dev/api/embeddings): POST /v1beta/models/{model}:embedContent
({content: {parts: [{text}]}, taskType?, title?, outputDimensionality?} -> {"embedding":
{"values": [...]}}) and POST /v1beta/models/{model}:batchEmbedContents ({requests: [{model:
"models/<model>", content, taskType?, outputDimensionality?}]} -> {"embeddings": [{"values"}]}),
with the same key checks; values[k] = k/100 + len(text)/1000 (text: the parts' text joined by
spaces), outputDimensionality values (default 8). Unknown fields, empty parts, an unknown
taskType, or a batch request whose model is not "models/<model in the URL>" -> 400
INVALID_ARGUMENT; gemini-error-<status>, gemini-quota and gemini-context fail as for
generateContent. Streams are SSE with CRLF framing
(`data: <GenerateContentResponse>\\r\\n\\r\\n`), as Google sends; without alt=sse the chunks come
back as one JSON array, as Google does. Other paths -> 404 NOT_FOUND.

Requests are checked the way Google checks them, with Google-shaped errors
({"error": {"code", "message", "status", "details"?}}): no `x-goog-api-key` -> 403
PERMISSION_DENIED; a key starting with "invalid" -> 400 INVALID_ARGUMENT "API key not valid. ..."
with ErrorInfo reason API_KEY_INVALID; a body that is not a JSON object, unknown fields (top
level, e.g. "model"; generationConfig; parts; schema keywords such as additionalProperties) ->
400 'Invalid JSON payload received. Unknown name "x" ...'; empty contents, a role other than
user/model, empty parts, functionResponse parts that do not match the function calls of the model
turn before, an OBJECT schema without properties -> 400 INVALID_ARGUMENT.

The scenario is picked by the model in the path (or an `X-Fake-Scenario` header):
  gemini-fake (default)   text "fake: <last user text>" (+ " [images: N]" for inlineData/fileData
                          parts; "fake: tool said <content>" when the last user turn has a
                          functionResponse); JSON {"answer": "yes", "confidence": 0.9} when
                          generationConfig.responseMimeType is application/json; stopSequences and
                          maxOutputTokens (in words, finishReason MAX_TOKENS) are honoured; a
                          thought part first when thinkingConfig.includeThoughts; candidateCount
                          candidates
  gemini-tool             "Let me check." then a functionCall of the first declared function (or
                          get_weather) with {"city": "Paris", "unit": "c"}
  gemini-two-tools        "Let me check." then get_weather {"city": "Paris", "unit": "c"} and
                          get_time {"city": "Paris"}
  gemini-safety           a candidate with finishReason SAFETY and no content
  gemini-blocked          no candidates: promptFeedback.blockReason SAFETY
  gemini-error-<status>   that status with its google.rpc status (404: "models/<model> is not
                          found ..."; 429: RetryInfo retryDelay "7s" and retry-after: 7; 503: "The
                          model is overloaded. ...")
  gemini-quota            429 RESOURCE_EXHAUSTED with RetryInfo retryDelay "7s" and no header
  gemini-context          400 "The input token count (1200000) exceeds the maximum number of
                          tokens allowed (1048576)."
  gemini-truncate         stream: ends before the chunk that carries the finishReason
  gemini-slow             gemini-fake, `x-fake-delay` seconds (default 0.2) before the answer or
                          between stream chunks, watching for disconnect
toolConfig.functionCallingConfig mode NONE makes the tool scenarios answer like gemini-fake; mode
ANY with allowedFunctionNames [X] calls X with {"city": "Paris", "unit": "c"}.
Usage is deterministic: promptTokenCount = words of the system instruction, texts and function
responses; candidatesTokenCount = words of answer text + 10 per functionCall; thoughtsTokenCount
= words of thought text. Streams send one word per chunk, a functionCall whole in its own chunk,
and finishReason and usageMetadata on the last chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.fakes.openai import Seen, _wait_or_disconnect

__all__ = ["FakeGemini", "Seen"]

_ERRORS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
    ),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: (
        "NOT_FOUND",
        "models/{model} is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    ),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
          "https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}  # fmt: skip
_RETRY = [
    {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
            }
        ],
    },
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
]
_BAD_KEY = [
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
]
_TOP = {
    "contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
    "cachedContent",
}  # fmt: skip
_CONFIG = {
    "temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount", "seed",
    "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema",
    "responseJsonSchema", "thinkingConfig", "responseLogprobs", "logprobs", "responseModalities",
}  # fmt: skip
_PART = {
    "text", "inlineData", "fileData", "functionCall", "functionResponse", "thought",
    "thoughtSignature", "executableCode", "codeExecutionResult", "videoMetadata",
}  # fmt: skip
_SCHEMA = {
    "type", "format", "title", "description", "nullable", "enum", "items", "properties",
    "required", "anyOf", "propertyOrdering", "default", "example", "minItems", "maxItems",
    "minLength", "maxLength", "minProperties", "maxProperties", "minimum", "maximum", "pattern",
}  # fmt: skip
_PARIS = {"city": "Paris", "unit": "c"}
_JSON_ANSWER = '{"answer": "yes", "confidence": 0.9}'
_SAFETY = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]

Problem = tuple[int, str, str, list[Any]]


@dataclass
class FakeGemini:
    requests: list[Seen] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)  # model ids whose client went away

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        seen = Seen(scope["method"], scope["path"], headers, body, raw)
        seen.query = scope.get("query_string", b"").decode()
        self.requests.append(seen)
        path = scope["path"]
        # Vertex AI serves the same body at .../projects/P/locations/L/publishers/google/models/M
        # with an OAuth2 bearer token (https://cloud.google.com/vertex-ai/docs/reference/rest).
        vertex = _VERTEX.match(path)
        if vertex:
            path = "/v1beta/models/" + vertex.group(3)
        model, _, method = path.removeprefix("/v1beta/models/").rpartition(":")
        routed = path.startswith("/v1beta/models/") and scope["method"] == "POST"
        if routed and model and method in ("embedContent", "batchEmbedContents"):
            await self._embed(method, model, headers, body, vertex is not None, send)
            return
        if not routed or not model or method not in ("generateContent", "streamGenerateContent"):
            await _error(send, 404, "NOT_FOUND", "Requested entity was not found.")
            return
        check = _check_bearer if vertex else _check_key
        problem = check(headers) or _check_body(body)
        if problem:
            await _error(send, *problem)
            return
        assert isinstance(body, dict)
        scenario = headers.get("x-fake-scenario") or model
        delay = float(headers.get("x-fake-delay") or 0.2) if scenario == "gemini-slow" else 0.0
        if await self._fail(scenario, model, send):
            return
        doc = _response(scenario, model, body, f"fakeResp{len(self.requests):08d}")
        if method == "streamGenerateContent":
            chunks = _chunks(doc)
            if "alt=sse" not in seen.query:
                await _json(send, 200, chunks)  # Google's JSON-array stream
            else:
                await self._stream(scenario, chunks, receive, send, delay)
            return
        if delay and await _wait_or_disconnect(receive, delay):
            self.disconnects.append(scenario)
            return
        await _json(send, 200, doc)

    async def _embed(
        self,
        method: str,
        model: str,
        headers: dict[str, str],
        body: Any,
        vertex: bool,
        send: Any,
    ) -> None:
        check = _check_bearer if vertex else _check_key
        problem = check(headers) or _check_embed(method, model, body)
        if problem:
            await _error(send, *problem)
            return
        scenario = headers.get("x-fake-scenario") or model
        if await self._fail(scenario, model, send):
            return
        if method == "embedContent":
            await _json(send, 200, {"embedding": _embedding(body)})
        else:
            await _json(send, 200, {"embeddings": [_embedding(r) for r in body["requests"]]})

    async def _fail(self, scenario: str, model: str, send: Any) -> bool:
        if scenario.startswith("gemini-error-"):
            status = int(scenario.removeprefix("gemini-error-"))
            gstatus, message = _ERRORS.get(status, _ERRORS[500])
            details = _RETRY if status == 429 else []
            extra = [(b"retry-after", b"7")] if status == 429 else []
            await _error(send, status, gstatus, message.format(model=model), details, extra)
        elif scenario == "gemini-quota":
            await _error(send, 429, *_ERRORS[429], _RETRY)
        elif scenario == "gemini-context":
            msg = (
                "The input token count (1200000) exceeds the maximum number of tokens allowed "
                "(1048576)."
            )
            await _error(send, 400, "INVALID_ARGUMENT", msg)
        else:
            return False
        return True

    async def _stream(
        self, scenario: str, chunks: list[dict[str, Any]], receive: Any, send: Any, delay: float
    ) -> None:
        hdrs = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": hdrs})
        if scenario == "gemini-truncate":
            chunks = chunks[:-1]
        for i, chunk in enumerate(chunks):
            if delay and i and await _wait_or_disconnect(receive, delay):
                self.disconnects.append(scenario)
                return
            data = b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# --- checks ---------------------------------------------------------------------------------


_VERTEX = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/google/models/(.+)$")


def _check_bearer(headers: dict[str, str]) -> Problem | None:
    if not headers.get("authorization", "").startswith("Bearer ya29."):
        msg = "Request had invalid authentication credentials. Expected OAuth 2 access token."
        return 401, "UNAUTHENTICATED", msg, []
    return None


def _check_key(headers: dict[str, str]) -> Problem | None:
    key = headers.get("x-goog-api-key")
    if not key:
        msg = (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API."
        )
        return 403, "PERMISSION_DENIED", msg, []
    if key.startswith("invalid"):
        return 400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", _BAD_KEY
    return None


def _bad(message: str) -> Problem:
    return 400, "INVALID_ARGUMENT", message, []


def _unknown(obj: dict[str, Any], allowed: set[str], where: str) -> Problem | None:
    extra = sorted(set(obj) - allowed)
    if not extra:
        return None
    at = f" at '{where}'" if where else ""
    return _bad(f'Invalid JSON payload received. Unknown name "{extra[0]}"{at}: Cannot find field.')


def _check_body(body: Any) -> Problem | None:
    if not isinstance(body, dict):
        return _bad("Invalid JSON payload received. Expected an object.")
    cfg = body.get("generationConfig") or {}
    return (
        _unknown(body, _TOP, "")
        or _unknown(cfg, _CONFIG, "generation_config")
        or _check_contents(body.get("contents"))
        or _check_tools(body.get("tools"))
        or _check_schema(cfg.get("responseSchema"), "generation_config.response_schema")
    )


def _check_contents(contents: Any) -> Problem | None:
    if not isinstance(contents, list) or not contents:
        return _bad("* GenerateContentRequest.contents: contents is not specified\n")
    for i, c in enumerate(contents):
        if c.get("role") not in ("user", "model"):
            return _bad("Please use a valid role: user, model.")
        parts = c.get("parts")
        if not isinstance(parts, list) or not parts:
            return _bad(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            )
        for j, p in enumerate(parts):
            problem = _unknown(p, _PART, f"contents[{i}].parts[{j}]")
            if problem:
                return problem
        answers = [p["functionResponse"] for p in parts if "functionResponse" in p]
        prev = contents[i - 1].get("parts") or [] if i else []
        calls = [p["functionCall"].get("name") for p in prev if "functionCall" in p]
        if answers and (
            len(answers) != len(calls) or any(a.get("name") not in calls for a in answers)
        ):
            return _bad(
                "Please ensure that the number of function response parts is equal to the number "
                "of function call parts of the function call turn."
            )
    return None


def _check_tools(tools: Any) -> Problem | None:
    for i, tool in enumerate(tools or []):
        for j, decl in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{i}].function_declarations[{j}]"
            if not decl.get("name"):
                return _bad(f"* GenerateContentRequest.{where}.name: Invalid function name.\n")
            problem = _check_schema(decl.get("parameters"), f"{where}.parameters")
            if problem:
                return problem
    return None


def _check_schema(node: Any, where: str) -> Problem | None:
    if not isinstance(node, dict):
        return None
    problem = _unknown(node, _SCHEMA, where)
    if problem:
        return problem
    if str(node.get("type", "")).upper() == "OBJECT" and not node.get("properties"):
        return _bad(
            f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type\n"
        )
    subs = [
        (f"{where}.properties[{k}].value", v) for k, v in (node.get("properties") or {}).items()
    ]
    subs += [(f"{where}.items", node["items"])] if "items" in node else []
    subs += [(f"{where}.any_of[{k}]", v) for k, v in enumerate(node.get("anyOf") or [])]
    for sub_where, sub in subs:
        problem = _check_schema(sub, sub_where)
        if problem:
            return problem
    return None


_EMBED = {"model", "content", "taskType", "title", "outputDimensionality"}
_TASKS = {
    "TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
    "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY",
}  # fmt: skip


def _check_embed(method: str, model: str, body: Any) -> Problem | None:
    if not isinstance(body, dict):
        return _bad("Invalid JSON payload received. Expected an object.")
    if method == "batchEmbedContents":
        problem = _unknown(body, {"requests"}, "")
        reqs = body.get("requests")
        if problem or not isinstance(reqs, list) or not reqs:
            return problem or _bad(
                "* BatchEmbedContentsRequest.requests: requests is not specified\n"
            )
        for i, req in enumerate(reqs):
            if not isinstance(req, dict):
                return _bad(f"Invalid JSON payload received. requests[{i}]: Expected an object.")
            if req.get("model") != f"models/{model}":
                return _bad(
                    f"* BatchEmbedContentsRequest.requests[{i}].model: The model in the request "
                    f"must match the model in the URL (models/{model}).\n"
                )
            problem = _check_embed_one(req, f"requests[{i}]")
            if problem:
                return problem
        return None
    return _check_embed_one(body, "")


def _check_embed_one(req: dict[str, Any], where: str) -> Problem | None:
    problem = _unknown(req, _EMBED, where)
    if problem:
        return problem
    parts = (req.get("content") or {}).get("parts")
    if not isinstance(parts, list) or not parts:
        return _bad("* EmbedContentRequest.content: content is not specified\n")
    for j, p in enumerate(parts):
        problem = _unknown(p, _PART, f"{where + '.' if where else ''}content.parts[{j}]")
        if problem:
            return problem
    if req.get("taskType") is not None and req["taskType"] not in _TASKS:
        return _bad(
            f"Invalid value at '{where + '.' if where else ''}task_type' "
            f'(type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), "{req["taskType"]}"'
        )
    dims = req.get("outputDimensionality")
    if dims is not None and (not isinstance(dims, int) or dims < 1):
        return _bad("* EmbedContentRequest.output_dimensionality: must be positive\n")
    return None


def _embedding(req: dict[str, Any]) -> dict[str, Any]:
    """values[k] = k/100 + len(text)/1000, len(values) = outputDimensionality (default 8)."""
    text = " ".join(str(p.get("text", "")) for p in req["content"]["parts"])
    dims = int(req.get("outputDimensionality") or 8)
    return {"values": [round(k / 100 + len(text) / 1000, 6) for k in range(dims)]}


# --- answers --------------------------------------------------------------------------------


def _words(text: str) -> int:
    return len(text.split())


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _reply(body: dict[str, Any]) -> str:
    last = next((c for c in reversed(body["contents"]) if c["role"] == "user"), {})
    parts = last.get("parts") or []
    result = next((p["functionResponse"] for p in parts if "functionResponse" in p), None)
    if result is not None:
        return f"fake: tool said {_as_text((result.get('response') or {}).get('content'))}"
    images = sum(1 for p in parts if "inlineData" in p or "fileData" in p)
    text = " ".join(p["text"] for p in parts if "text" in p)
    return f"fake: {text}" + (f" [images: {images}]" if images else "")


def _text(body: dict[str, Any], cfg: dict[str, Any]) -> tuple[str, str]:
    if cfg.get("responseMimeType") == "application/json":
        return _JSON_ANSWER, "STOP"
    text, finish = _reply(body), "STOP"
    for s in cfg.get("stopSequences") or []:
        if s and s in text:
            text = text[: text.index(s)]
            break
    words, cap = text.split(" "), cfg.get("maxOutputTokens")
    if cap and len(words) > cap:
        text, finish = " ".join(words[:cap]), "MAX_TOKENS"
    return text, finish


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"functionCall": {"name": name, "args": args}}


def _parts(scenario: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    cfg = body.get("generationConfig") or {}
    fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    decls = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    if fcc.get("mode") == "NONE":
        scenario = "gemini-fake"  # functions may not be called
    if scenario == "gemini-safety":
        return [], "SAFETY"
    if fcc.get("mode") == "ANY" and fcc.get("allowedFunctionNames"):
        return [_call(fcc["allowedFunctionNames"][0], _PARIS)], "STOP"
    if scenario == "gemini-tool":
        first = decls[0]["name"] if decls else "get_weather"
        return [{"text": "Let me check."}, _call(first, _PARIS)], "STOP"
    if scenario == "gemini-two-tools":
        calls = [_call("get_weather", _PARIS), _call("get_time", {"city": "Paris"})]
        return [{"text": "Let me check."}, *calls], "STOP"
    text, finish = _text(body, cfg)
    parts: list[dict[str, Any]] = [{"text": text}]
    if (cfg.get("thinkingConfig") or {}).get("includeThoughts"):
        parts.insert(0, {"text": f"The user asked: {_reply(body)[6:]}", "thought": True})
    return parts, finish


def _prompt_words(body: dict[str, Any]) -> int:
    system = (body.get("systemInstruction") or {}).get("parts") or []
    parts = [*system, *(p for c in body["contents"] for p in c["parts"])]
    texts = [p.get("text") or "" for p in parts]
    texts += [
        _as_text(p["functionResponse"].get("response")) for p in parts if "functionResponse" in p
    ]
    return sum(_words(t) for t in texts)


def _response(scenario: str, model: str, body: dict[str, Any], rid: str) -> dict[str, Any]:
    prompt = _prompt_words(body)
    head = {"modelVersion": model, "responseId": rid}
    if scenario == "gemini-blocked":
        usage = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        feedback = {"blockReason": "SAFETY", "safetyRatings": _SAFETY}
        return {"promptFeedback": feedback, "usageMetadata": usage, **head}
    parts, finish = _parts(scenario, body)
    n = int((body.get("generationConfig") or {}).get("candidateCount") or 1)
    cands = []
    for i in range(n):
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}} if parts else {}
        cand.update({"finishReason": finish, "index": i})
        if finish == "SAFETY":
            cand["safetyRatings"] = _SAFETY
        cands.append(cand)
    answer = sum(_words(p.get("text", "")) for p in parts if not p.get("thought"))
    answer += 10 * sum("functionCall" in p for p in parts)
    thoughts = sum(_words(p["text"]) for p in parts if p.get("thought"))
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": answer * n,
        "totalTokenCount": prompt + answer * n + thoughts * n,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts * n
    return {"candidates": cands, "usageMetadata": usage, **head}


def _chunks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream of one response: a chunk per word, a functionCall whole in its own chunk."""
    head = {"modelVersion": doc["modelVersion"], "responseId": doc["responseId"]}
    if "candidates" not in doc:
        return [doc]
    cand = doc["candidates"][0]
    out = []
    for part in (cand.get("content") or {}).get("parts") or []:
        pieces = [part]
        if "text" in part:
            words = part["text"].split(" ")
            pieces = [{**part, "text": w if not k else " " + w} for k, w in enumerate(words)]
        for piece in pieces:
            content = {"parts": [piece], "role": "model"}
            out.append({"candidates": [{"content": content, "index": 0}], **head})
    if not out:
        out.append({"candidates": [{"index": 0}], **head})
    last = out[-1]["candidates"][0]
    last.update({k: v for k, v in cand.items() if k in ("finishReason", "safetyRatings")})
    out[-1]["usageMetadata"] = doc["usageMetadata"]
    return out


async def _error(
    send: Any,
    status: int,
    gstatus: str,
    message: str,
    details: list[Any] | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    err: dict[str, Any] = {"code": status, "message": message, "status": gstatus}
    if details:
        err["details"] = details
    await _json(send, status, {"error": err}, extra)


async def _json(
    send: Any, status: int, doc: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    hdrs = [(b"content-type", b"application/json; charset=UTF-8"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": orjson.dumps(doc)})
