"""POST /v1/audio/speech (audio bytes relayed as they arrive) and /v1/audio/transcriptions
(a multipart upload), to OpenAI-style servers.

https://platform.openai.com/docs/api-reference/audio/createSpeech
https://platform.openai.com/docs/api-reference/audio/createTranscription
The upload is parsed with Starlette's multipart parser (python-multipart) and sent on as it came
when the upstream model id is the public one; otherwise it is re-encoded with that id.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from llm_proxy.endpoints import checks as C
from llm_proxy.endpoints.op import Op, Target, openai_url, raw
from llm_proxy.formats import openai_chat
from llm_proxy.pipeline import Endpoint
from llm_proxy.runtime import Deployment

SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
MAX_SPEECH_INPUT = 4096  # characters, OpenAI's limit


def validate_speech(body: dict[str, Any]) -> dict[str, Any]:
    C.model(body)
    C.string(body, "input", req=True, max_len=MAX_SPEECH_INPUT)
    C.string(body, "voice", req=True)
    C.one_of(body, "response_format", SPEECH_FORMATS)
    C.number(body, "speed", 0.25, 4.0)
    C.string(body, "instructions")
    C.one_of(body, "stream_format", ("sse", "audio"))
    return body


async def parse_speech(raw_body: bytes, headers: dict[bytes, bytes]) -> tuple[dict[str, Any], Op]:
    body = validate_speech(C.json_object(raw_body))

    def build(model: str) -> bytes:
        return raw_body if body["model"] == model else orjson.dumps({**body, "model": model})

    def pick(d: Deployment) -> Target | None:
        url = openai_url(d, "/audio/speech")
        if url is None:
            return None
        return Target(raw(build, openai_chat.from_upstream_error), url, url)

    # Relayed as a stream: the audio reaches the client as the upstream produces it.
    return {"model": body["model"], "stream": True}, Op("speech", pick)


# --- transcriptions -------------------------------------------------------------------------


async def _form(raw_body: bytes, ctype: bytes) -> list[tuple[str, str | UploadFile]]:
    async def chunks() -> Any:
        yield raw_body

    try:
        form = await MultiPartParser(
            Headers(raw=[(b"content-type", ctype)]),
            chunks(),
            max_files=1,
            max_fields=100,
            max_part_size=1024 * 1024,
        ).parse()
    except MultiPartException as e:
        raise C.bad(f"The upload is not valid multipart/form-data: {e.message}", None) from None
    return list(form.multi_items())


def _fields(items: list[tuple[str, str | UploadFile]]) -> dict[str, Any]:
    """The form's fields; a field sent twice is refused (servers disagree on which one wins:
    the gateway would route and bill one model while the upstream ran another). Array fields
    (`name[]`) may repeat."""
    out: dict[str, Any] = {}
    for k, v in items:
        if k in out and not k.endswith("[]"):
            raise C.bad(f"The field '{k}' is given more than once.", k)
        if isinstance(v, str):
            out[k] = v
        else:
            out[k] = None  # the upload itself
    return {k: v for k, v in out.items() if v is not None}


def transcript_usage(body: bytes) -> dict[str, Any] | None:
    """Token usage of a JSON transcript (gpt-4o-transcribe: {"type": "tokens", ...}); None for
    Whisper's duration usage and text formats."""
    if not body.startswith(b"{") or b'"usage"' not in body:
        return None
    try:
        u = orjson.loads(body).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(u, dict) or u.get("type") != "tokens":
        return None
    p, c = u.get("input_tokens"), u.get("output_tokens")
    p, c = (p if isinstance(p, int) else 0), (c if isinstance(c, int) else 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode_form(parts: list[tuple[str, str | tuple[str, str, bytes]]]) -> tuple[bytes, str]:
    """multipart/form-data bytes and their content-type; a file is (filename, type, bytes)."""
    boundary = "llmproxy" + os.urandom(12).hex()
    out: list[bytes] = []
    for name, value in parts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"'
        if isinstance(value, tuple):
            fname, ftype, data = value
            out.append(
                f'{head}; filename="{_quote(fname)}"\r\nContent-Type: {ftype}\r\n\r\n'.encode()
            )
            out.append(data)
        else:
            out.append(f"{head}\r\n\r\n".encode())
            out.append(value.encode())
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


async def parse_transcription(
    raw_body: bytes, headers: dict[bytes, bytes]
) -> tuple[dict[str, Any], Op]:
    ctype = headers.get(b"content-type", b"")
    if not ctype.lower().startswith(b"multipart/form-data"):
        raise C.bad(
            "Transcriptions take multipart/form-data (a `file` and a `model`).",
            None,
            "invalid_content_type",
        )
    items = await _form(raw_body, ctype)
    fields = _fields(items)
    files = [(k, v) for k, v in items if not isinstance(v, str)]
    if not files or files[0][0] != "file":
        raise C.bad("Missing required parameter: 'file'.", "file", "missing_required_parameter")
    C.model(fields)
    C.one_of(fields, "response_format", TRANSCRIPT_FORMATS)
    upload = files[0][1]
    assert isinstance(upload, UploadFile)
    data = await upload.read()
    if not data:
        raise C.bad("'file' is empty.", "file")
    fname, ftype = upload.filename or "audio", upload.content_type or "application/octet-stream"
    model = fields["model"]

    built: dict[str, tuple[bytes, str]] = {}  # upstream model -> (body, content-type)

    def encoded(upstream: str) -> tuple[bytes, str]:
        if upstream == model:
            return raw_body, ctype.decode("latin-1")
        if upstream not in built:
            parts: list[tuple[str, str | tuple[str, str, bytes]]] = []
            for k, v in items:
                if isinstance(v, str):
                    parts.append((k, upstream if k == "model" else v))
                else:
                    parts.append((k, (fname, ftype, data)))
            built[upstream] = encode_form(parts)
        return built[upstream]

    def pick(d: Deployment) -> Target | None:
        url = openai_url(d, "/audio/transcriptions")
        if url is None:
            return None
        # The content-type names the boundary: the client's own, or the re-encoded body's.
        head = encoded(d.model)[1]
        wire = raw(lambda m: encoded(m)[0], openai_chat.from_upstream_error, transcript_usage)
        return Target(wire, url, url, {"Content-Type": head})

    stream = fields.get("stream") in ("true", "True", "1")
    return {"model": model, "stream": stream}, Op("transcription", pick)


SPEECH = Endpoint(parse_speech)
TRANSCRIPTIONS = Endpoint(parse_transcription)
