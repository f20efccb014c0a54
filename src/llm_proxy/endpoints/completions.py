"""POST /v1/completions (legacy text completions; seed 003): sent as they came to servers that
still have the endpoint, translated to chat for every other deployment.

https://platform.openai.com/docs/api-reference/completions/create
Native: the local OpenAI-style servers (vLLM, Ollama, llama.cpp, LM Studio, LocalAI, seed 004's
openai_compat) and hosted ones that kept it (Together, Fireworks, OpenRouter, DeepSeek), and any
OpenAI-format deployment of an instruct/base model (`*instruct*`, `davinci*`, `babbage*`).
Translated: the prompt becomes one user message; `echo` prepends the prompt to the text;
several prompts, token-id prompts, `suffix`, `logprobs` and `best_of` need a native deployment.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from llm_proxy.canonical.chat import validate_chat
from llm_proxy.endpoints import checks as C
from llm_proxy.endpoints.op import Op, Outbound, PassState, Target, chat_target, openai_url
from llm_proxy.endpoints.op import passthrough as pass_wire
from llm_proxy.formats import openai_chat
from llm_proxy.pipeline import Endpoint
from llm_proxy.runtime import Deployment

NATIVE_TYPES = frozenset(
    {
        "vllm", "ollama", "llamacpp", "lmstudio", "localai", "openai_compat",
        "together", "fireworks", "openrouter", "deepseek",
    }
)  # fmt: skip
_NATIVE_MODELS = ("instruct", "davinci", "babbage")
DEFAULT_MAX_TOKENS = 16  # the legacy endpoint's own default
_COPIED = (
    "temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty", "logit_bias",
    "seed", "user", "stream",
)  # fmt: skip


def validate(body: dict[str, Any]) -> dict[str, Any]:
    C.model(body)
    prompt = C.required(body, "prompt")
    if not (
        isinstance(prompt, str) or (isinstance(prompt, list) and prompt and _prompt_list(prompt))
    ):
        raise C.bad(
            "'prompt' must be a string, an array of strings, an array of token ids, or an array "
            "of token-id arrays.",
            "prompt",
            "invalid_type",
        )
    C.integer(body, "max_tokens", 0, 2**31 - 1)
    C.number(body, "temperature", 0, 2)
    C.number(body, "top_p", 0, 1)
    C.integer(body, "n", 1, 128)
    C.integer(body, "best_of", 0, 20)
    C.integer(body, "logprobs", 0, 5)
    C.number(body, "presence_penalty", -2, 2)
    C.number(body, "frequency_penalty", -2, 2)
    for name in ("stream", "echo"):
        C.boolean(body, name)
    C.string(body, "suffix")
    C.string(body, "user")
    if C.obj(body, "stream_options") is not None and not body.get("stream"):
        raise C.bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    return body


def _prompt_list(p: list[Any]) -> bool:
    def ints(x: Any) -> bool:
        return isinstance(x, list) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in x
        )

    return all(isinstance(x, str) for x in p) or ints(p) or all(ints(x) for x in p)


def _single_prompt(body: dict[str, Any]) -> str | None:
    p = body["prompt"]
    if isinstance(p, str):
        return p
    if len(p) == 1 and isinstance(p[0], str):
        return str(p[0])
    return None


def to_chat(body: dict[str, Any], prompt: str) -> dict[str, Any]:
    chat: dict[str, Any] = {
        "model": body["model"],
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": body.get("max_tokens") or DEFAULT_MAX_TOKENS,
    }
    for k in _COPIED:
        if body.get(k) is not None:
            chat[k] = body[k]
    if chat.get("stream"):
        chat["stream_options"] = {"include_usage": True}
    return validate_chat(chat)


def _choice_text(choice: dict[str, Any], prefix: str) -> str:
    msg = choice.get("message") or {}
    text = msg.get("content") if isinstance(msg, dict) else None
    return prefix + (text if isinstance(text, str) else "")


def outbound(body: dict[str, Any], prompt: str) -> Outbound:
    echo = prompt if body.get("echo") else ""
    so = body.get("stream_options")
    wants_usage = isinstance(so, dict) and bool(so.get("include_usage"))

    def plain(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "cmpl-" + str(doc.get("id", "")).removeprefix("chatcmpl-"),
            "object": "text_completion",
            "created": doc.get("created") or int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "text": _choice_text(c, echo),
                    "index": c.get("index", i),
                    "logprobs": None,
                    "finish_reason": c.get("finish_reason"),
                }
                for i, c in enumerate(doc.get("choices") or [])
                if isinstance(c, dict)
            ],
            "usage": doc.get("usage"),
        }

    return Outbound(plain, lambda: TextStream(body["model"], echo, wants_usage), has_text)


def has_text(out: bytes) -> bool:
    return (out.count(b'"text":"') != out.count(b'"text":""')) or b'"finish_reason":"' in out


class TextStream:
    """chat.completion.chunk objects -> text_completion stream objects, then [DONE]."""

    def __init__(self, model: str, echo: str, wants_usage: bool) -> None:
        self.model, self.echo, self.wants_usage = model, echo, wants_usage
        self.ended = False

    def _event(self, chunk: dict[str, Any], choices: list[Any]) -> bytes:
        doc: dict[str, Any] = {
            "id": "cmpl-" + str(chunk.get("id", "")).removeprefix("chatcmpl-"),
            "object": "text_completion",
            "created": chunk.get("created") or int(time.time()),
            "model": self.model,
            "choices": choices,
        }
        if chunk.get("usage") and self.wants_usage:
            doc["usage"] = chunk["usage"]
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = []
        for i, c in enumerate(chunk.get("choices") or []):
            delta = c.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            text = text if isinstance(text, str) else ""
            if self.echo and "role" in delta:
                text, self.echo = self.echo + text, ""
            if text or c.get("finish_reason"):
                out.append(
                    {
                        "text": text,
                        "index": c.get("index", i),
                        "logprobs": None,
                        "finish_reason": c.get("finish_reason"),
                    }
                )
        if out or (chunk.get("usage") and self.wants_usage):
            return self._event(chunk, out)
        return b""

    def finish(self) -> bytes:
        if self.ended:
            return b""
        self.ended = True
        return b"data: [DONE]\n\n"

    def error_event(self, err: Any) -> bytes:
        return openai_chat.stream_error(err)


def _native(d: Deployment) -> bool:
    if d.provider.format != "openai":
        return False
    p = d.provider  # a configured `type: openai` provider named `vllm` is a vLLM server
    return (
        p.type in NATIVE_TYPES
        or p.name in NATIVE_TYPES
        or any(m in d.model.lower() for m in _NATIVE_MODELS)
    )


def _watch(data: bytes, st: PassState) -> None:
    if data == b"[DONE]":
        st.done = True
    elif b'"usage"' in data:
        doc = orjson.loads(data) if openai_chat.is_json(data) else None
        if isinstance(doc, dict) and isinstance(doc.get("usage"), dict):
            st.usage = doc["usage"]


def _usage(doc: dict[str, Any]) -> dict[str, Any] | None:
    u = doc.get("usage")
    return u if isinstance(u, dict) else None


async def parse(raw: bytes, headers: dict[bytes, bytes]) -> tuple[dict[str, Any], Op]:
    body = validate(C.json_object(raw))
    prompt = _single_prompt(body)
    translatable = prompt is not None and not (
        body.get("suffix") or body.get("logprobs") or body.get("best_of")
    )
    out = outbound(body, prompt) if prompt is not None else None

    def pick(d: Deployment) -> Target | None:
        if _native(d):
            url = openai_url(d, "/completions")
            if url is not None:
                wire = pass_wire(
                    raw, body, openai_chat.from_upstream_error, _usage, _watch,
                    openai_chat.stream_error,
                )  # fmt: skip
                return Target(wire, url, url)
        if not translatable or out is None:
            return None
        return chat_target(d, out)

    canonical = to_chat(body, prompt if prompt is not None else _joined(body["prompt"]))
    return canonical, Op("text completions", pick)


def _joined(prompt: Any) -> str:
    """Admission's view of a prompt no chat deployment can take (several, or token ids)."""
    return orjson.dumps(prompt).decode()


ENDPOINT = Endpoint(parse)
