"""A fake Amazon Bedrock runtime (raw ASGI): Converse and ConverseStream, with SigV4 checked.

Wire format from the Amazon Bedrock API reference:
  Converse        POST /model/{modelId}/converse
                  https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
  ConverseStream  POST /model/{modelId}/converse-stream, answered as an AWS event stream
                  (application/vnd.amazon.eventstream) of ConverseStreamOutput events
                  https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
                  https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html
  Errors          {"message": ...} with the type in the x-amzn-ErrorType header

Every request must be signed with Signature Version 4 for access key KNOWN_ACCESS_KEY (secret
KNOWN_SECRET_KEY, service "bedrock", any region): the fake recomputes the signature with
botocore over the method, the raw path and query, the headers named in SignedHeaders and the
body, and answers 403 like AWS does when it differs (InvalidSignatureException), when the key is
unknown (UnrecognizedClientException), when the signature is missing
(MissingAuthenticationTokenException) or more than 15 minutes old.

The scenario is picked by the model id in the path:
  fake-bedrock (default)      text "fake: <last user text>", plus " [images: N]" when the last
                              user turn has image blocks; "fake: tool said <text>" when it holds a
                              toolResult
  fake-bedrock-tool           "Let me check." then a toolUse of the first toolConfig tool with
                              {"city": "Paris", "unit": "c"}; with toolChoice {"tool": {"name": X}}
                              (any model id) a toolUse of X with {"answer": "yes", "confidence": 0.9}
  fake-bedrock-error-<status> a Bedrock error: 400 ValidationException, 403 AccessDeniedException,
                              404 ResourceNotFoundException, 429 ThrottlingException,
                              500 InternalServerException, 503 ServiceUnavailableException
  fake-bedrock-context        400 ValidationException "Input is too long for requested model."
  fake-bedrock-truncate       a stream that ends after the first text delta (no messageStop or
                              metadata); non-stream calls answer normally
  fake-bedrock-midstream-error  a stream with a throttlingException exception event after the
                              first text delta
  fake-bedrock-hang           never answers (until the client goes away)
Streams, like the real service, send no contentBlockStart for text blocks (only for toolUse),
text deltas one word at a time, toolUse input as three JSON string fragments, then
contentBlockStop, messageStop (stopReason) and metadata (usage, metrics). Delta payloads carry
the "p" padding field the real service adds, which a client must ignore.
"""

from __future__ import annotations

import base64
import calendar
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes.openai import Seen, _wait_or_disconnect

KNOWN_ACCESS_KEY = "AKIDFAKE"
KNOWN_SECRET_KEY = "fake-secret"
SERVICE = "bedrock"
MAX_SKEW = 15 * 60  # seconds: AWS rejects older (or further future) X-Amz-Date values

_CORAL = "http://internal.amazon.com/coral/com.amazon.coral.service/"
_BEDROCK = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_ERRORS = {
    400: ("ValidationException", "fake upstream error 400: malformed input request"),
    403: (
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    404: (
        "ResourceNotFoundException",
        "Could not resolve the foundation model from the provided model identifier.",
    ),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: (
        "ServiceUnavailableException",
        "The service is temporarily unavailable. Try again later.",
    ),
}
_BLOCK_TYPES = {
    "text",
    "image",
    "document",
    "video",
    "toolUse",
    "toolResult",
    "guardrailContent",
    "cachePoint",
    "reasoningContent",
    "citationsContent",
}
_IMAGE_FORMATS = {"png", "jpeg", "gif", "webp"}


class _Reject(Exception):
    def __init__(self, status: int, etype: str, message: str, namespace: str = _BEDROCK) -> None:
        super().__init__(message)
        self.status, self.etype, self.message, self.namespace = status, etype, message, namespace


@dataclass
class FakeBedrock:
    requests: list[Seen] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)  # model ids whose client went away
    signed_headers: list[list[str]] = field(default_factory=list)  # per verified request
    regions: list[str] = field(default_factory=list)  # credential-scope region per request
    session_tokens: list[str | None] = field(default_factory=list)

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects.clear()
        self.signed_headers.clear()
        self.regions.clear()
        self.session_tokens.clear()

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
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(Seen(scope["method"], scope["path"], headers, body, raw, query))
        try:
            raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            self._verify(scope["method"], raw_path, query, headers, raw)
            model, stream = _route(scope["method"], scope["path"])
            if not isinstance(body, dict):
                raise _Reject(
                    400, "SerializationException", "Unable to parse request body as JSON."
                )
            _validate(body)
        except _Reject as r:
            await _error(send, r.status, r.etype, r.message, r.namespace)
            return
        await self._answer(model, stream, body, receive, send)

    # --- SigV4 -----------------------------------------------------------------------------

    def _verify(
        self, method: str, raw_path: str, query: str, headers: dict[str, str], raw: bytes
    ) -> None:
        auth = headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            raise _Reject(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token", _CORAL
            )
        fields: dict[str, str] = {}
        for part in auth.removeprefix("AWS4-HMAC-SHA256 ").split(","):
            key, _, value = part.strip().partition("=")
            fields[key] = value
        try:
            access_key, date, region, service, terminator = fields["Credential"].split("/")
            signed = fields["SignedHeaders"].split(";")
            signature = fields["Signature"]
        except (KeyError, ValueError) as e:
            raise _Reject(
                400,
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'.",
                _CORAL,
            ) from e
        if access_key != KNOWN_ACCESS_KEY:
            raise _Reject(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                _CORAL,
            )
        stamp = headers.get("x-amz-date", "")
        try:
            when = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        except ValueError as e:
            raise _Reject(
                400, "IncompleteSignatureException", "Missing or malformed X-Amz-Date.", _CORAL
            ) from e
        if abs(time.time() - when) > MAX_SKEW:
            raise _Reject(403, "InvalidSignatureException", f"Signature expired: {stamp}", _CORAL)
        if service != SERVICE or terminator != "aws4_request" or date != stamp[:8]:
            raise _Reject(403, "InvalidSignatureException", _BAD_SIGNATURE, _CORAL)
        if "host" not in signed or any(h not in headers for h in signed):
            raise _Reject(403, "InvalidSignatureException", _BAD_SIGNATURE, _CORAL)
        # The URL as received: the path exactly as sent (botocore escapes it once more, as AWS
        # does); the scheme only tells botocore to hash the payload, which it does for http.
        url = f"http://{headers['host']}{raw_path}" + (f"?{query}" if query else "")
        request = AWSRequest(
            method=method, url=url, headers={h: headers[h] for h in signed}, data=raw
        )
        request.context["timestamp"] = stamp
        signer = SigV4Auth(Credentials(KNOWN_ACCESS_KEY, KNOWN_SECRET_KEY), service, region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if signer.signed_headers(signer.headers_to_sign(request)) != ";".join(signed):
            raise _Reject(403, "InvalidSignatureException", _BAD_SIGNATURE, _CORAL)
        if expected != signature:
            raise _Reject(403, "InvalidSignatureException", _BAD_SIGNATURE, _CORAL)
        self.signed_headers.append(signed)
        self.regions.append(region)
        self.session_tokens.append(headers.get("x-amz-security-token"))

    # --- answers ---------------------------------------------------------------------------

    async def _answer(
        self, model: str, stream: bool, body: dict[str, Any], receive: Any, send: Any
    ) -> None:
        if model.startswith("fake-bedrock-error-"):
            status = int(model.removeprefix("fake-bedrock-error-"))
            etype, message = _ERRORS.get(status, ("InternalServerException", "fake error"))
            await _error(send, status, etype, message)
            return
        if model == "fake-bedrock-context":
            await _error(send, 400, "ValidationException", "Input is too long for requested model.")
            return
        if model == "fake-bedrock-hang":
            if await _wait_or_disconnect(receive, 3600):
                self.disconnects.append(model)
            return
        content, stop = _reply(model, body)
        usage = _usage(body, content)
        if not stream:
            doc = {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 1},
            }
            await _send_json(send, 200, doc)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/vnd.amazon.eventstream"),
                    (b"x-amzn-requestid", b"fake-request-id"),
                ],
            }
        )
        for i, (etype, payload) in enumerate(_events(content, stop, usage)):
            if model == "fake-bedrock-truncate" and i == 2:
                break
            if model == "fake-bedrock-midstream-error" and i == 2:
                frame = _encode(
                    {
                        ":exception-type": "throttlingException",
                        ":content-type": "application/json",
                        ":message-type": "exception",
                    },
                    orjson.dumps({"message": _ERRORS[429][1]}),
                )
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                break
            frame = _encode(
                {
                    ":event-type": etype,
                    ":content-type": "application/json",
                    ":message-type": "event",
                },
                orjson.dumps(payload),
            )
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _route(method: str, path: str) -> tuple[str, bool]:
    """(model id, streaming) from /model/{modelId}/converse[-stream]."""
    parts = path.split("/")
    if method == "POST" and len(parts) == 4 and parts[1] == "model" and parts[2]:
        if parts[3] == "converse":
            return parts[2], False
        if parts[3] == "converse-stream":
            return parts[2], True
    raise _Reject(404, "UnknownOperationException", "Unknown operation", _CORAL)


def _validate(body: dict[str, Any]) -> None:
    """The request checks the real service makes that a translation bug would trip."""

    def bad(message: str) -> _Reject:
        return _Reject(400, "ValidationException", message)

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad(
            "The model returned the following errors: messages: at least one message is required"
        )
    uses_tools = False
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise bad(f"messages.{i}.role: must be one of user, assistant")
        if i == 0 and m["role"] != "user":
            raise bad(
                "A conversation must start with a user message. "
                "Try again with a conversation that starts with a user message."
            )
        if i and messages[i - 1].get("role") == m["role"]:
            raise bad(
                "A conversation must alternate between user and assistant roles. "
                "Make sure the conversation alternates between user and assistant roles and try again."
            )
        content = m.get("content")
        if not isinstance(content, list) or not content:
            raise bad(f"messages.{i}.content: at least one content block is required")
        for j, block in enumerate(content):
            where = f"messages.{i}.content.{j}"
            if (
                not isinstance(block, dict)
                or len(block) != 1
                or next(iter(block)) not in _BLOCK_TYPES
            ):
                raise bad(f"{where}: a content block must have exactly one known member")
            kind, value = next(iter(block.items()))
            _validate_block(where, kind, value, m["role"], bad)
            uses_tools = uses_tools or kind in ("toolUse", "toolResult")
    tool_config = body.get("toolConfig")
    if uses_tools and not tool_config:
        raise bad(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    if tool_config is not None:
        tools = tool_config.get("tools") if isinstance(tool_config, dict) else None
        if not isinstance(tools, list) or not tools:
            raise bad("toolConfig.tools: at least one tool is required")
        for k, t in enumerate(tools):
            spec = t.get("toolSpec") if isinstance(t, dict) else None
            if not isinstance(spec, dict) or not spec.get("name"):
                raise bad(f"toolConfig.tools.{k}.toolSpec.name: required")
            schema = spec.get("inputSchema")
            if not isinstance(schema, dict) or not isinstance(schema.get("json"), dict):
                raise bad(f"toolConfig.tools.{k}.toolSpec.inputSchema.json: required")
    system = body.get("system")
    if system is not None and (
        not isinstance(system, list) or not all(isinstance(s, dict) and s for s in system)
    ):
        raise bad("system: must be a list of system content blocks")
    inference = body.get("inferenceConfig")
    if inference is not None:
        max_tokens = inference.get("maxTokens") if isinstance(inference, dict) else 0
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise bad("inferenceConfig.maxTokens: must be an integer of at least 1")


def _validate_block(where: str, kind: str, value: Any, role: str, bad: Any) -> None:
    if kind == "text" and not isinstance(value, str):
        raise bad(f"{where}.text: must be a string")
    if kind == "image":
        source = value.get("source") if isinstance(value, dict) else None
        if value.get("format") not in _IMAGE_FORMATS or not isinstance(source, dict):
            raise bad(f"{where}.image: format must be one of png, jpeg, gif, webp, with a source")
        data = source.get("bytes")
        if not isinstance(data, str):
            raise bad(f"{where}.image.source.bytes: base64 data required")
        try:
            base64.b64decode(data, validate=True)
        except ValueError as e:
            raise bad(f"{where}.image.source.bytes: invalid base64") from e
    if kind == "toolUse" and (
        role != "assistant"
        or not isinstance(value, dict)
        or not value.get("toolUseId")
        or not value.get("name")
        or "input" not in value
    ):
        raise bad(f"{where}.toolUse: toolUseId, name and input required, in an assistant turn")
    if kind == "toolResult" and (
        role != "user"
        or not isinstance(value, dict)
        or not value.get("toolUseId")
        or not isinstance(value.get("content"), list)
    ):
        raise bad(f"{where}.toolResult: toolUseId and content required, in a user turn")


def _reply(model: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """(content blocks, stopReason) for the scenario."""
    choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
    forced = (choice.get("tool") or {}).get("name") if isinstance(choice, dict) else None
    if forced:
        use = {
            "toolUseId": "tooluse_fake0002",
            "name": forced,
            "input": {"answer": "yes", "confidence": 0.9},
        }
        return [{"toolUse": use}], "tool_use"
    if model == "fake-bedrock-tool":
        name = (
            body["toolConfig"]["tools"][0]["toolSpec"]["name"]
            if body.get("toolConfig")
            else "get_weather"
        )
        use = {
            "toolUseId": "tooluse_fake0001",
            "name": name,
            "input": {"city": "Paris", "unit": "c"},
        }
        return [{"text": "Let me check."}, {"toolUse": use}], "tool_use"
    last = body["messages"][-1]
    blocks = last["content"] if last.get("role") == "user" else []
    results = [b["toolResult"] for b in blocks if "toolResult" in b]
    if results:
        said = []
        for part in results[0].get("content") or []:
            if "text" in part:
                said.append(str(part["text"]))
            elif "json" in part:
                said.append(orjson.dumps(part["json"]).decode())
        return [{"text": f"fake: tool said {' '.join(said)}"}], "end_turn"
    text = " ".join(b["text"] for b in blocks if "text" in b)
    images = sum(1 for b in blocks if "image" in b)
    suffix = f" [images: {images}]" if images else ""
    return [{"text": f"fake: {text}{suffix}"}], "end_turn"


def _usage(body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
    words = [b["text"] for m in body["messages"] for b in m["content"] if "text" in b]
    words += [s["text"] for s in body.get("system") or [] if "text" in s]
    inp = sum(len(w.split()) for w in words) or 1
    out = sum(len(b["text"].split()) if "text" in b else 5 for b in content)
    return {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out}


def _events(
    content: list[dict[str, Any]], stop: str, usage: dict[str, int]
) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(content):
        if "text" in block:
            words = block["text"].split(" ")
            for k, word in enumerate(words):
                piece = word if k == 0 else " " + word
                delta = {"contentBlockIndex": index, "delta": {"text": piece}, "p": "abcdefgh"}
                events.append(("contentBlockDelta", delta))
        else:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            args = orjson.dumps(use["input"]).decode()
            third = max(1, len(args) // 3)
            for piece in (args[:third], args[third : 2 * third], args[2 * third :]):
                delta = {
                    "contentBlockIndex": index,
                    "delta": {"toolUse": {"input": piece}},
                    "p": "abcd",
                }
                events.append(("contentBlockDelta", delta))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": stop}))
    events.append(("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
    return events


def _encode(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total and headers lengths, big-endian uint32),
    prelude CRC32, headers (name length byte, name, type 7 = string, uint16 length, value),
    payload, CRC32 of everything before it."""
    hdrs = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        hdrs += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(hdrs) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdrs))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + hdrs + payload
    return head + struct.pack(">I", zlib.crc32(head))


async def _error(
    send: Any, status: int, etype: str, message: str, namespace: str = _BEDROCK
) -> None:
    headers = [(b"x-amzn-errortype", f"{etype}:{namespace}".encode())]
    await _send_json(send, status, {"message": message}, headers)


async def _send_json(
    send: Any, status: int, doc: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"x-amzn-requestid", b"fake-request-id"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": orjson.dumps(doc)})
