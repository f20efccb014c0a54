"""The fake upstreams' non-chat endpoints, hit directly with the official SDKs (OpenAI, Anthropic)
or plain HTTP (Gemini, Cohere): proof that the fakes speak the wire formats the SDKs parse."""

from __future__ import annotations

import base64
import http.client
import json
import struct
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from openai.types.responses import Response

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.cohere import FakeCohere
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import ServerThread


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _serve(app: Any) -> Iterator[tuple[Any, ServerThread]]:
    server = ServerThread(app).start()
    try:
        yield app, server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def oai_server() -> Iterator[tuple[FakeOpenAI, ServerThread]]:
    yield from _serve(FakeOpenAI())


@pytest.fixture
def oai(oai_server: tuple[FakeOpenAI, ServerThread]) -> FakeOpenAI:
    oai_server[0].reset()
    return oai_server[0]


@pytest.fixture
def client(oai: FakeOpenAI, oai_server: tuple[FakeOpenAI, ServerThread]) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{oai_server[1].url}/v1", api_key="sk-fake", max_retries=0, timeout=10
    )


def _post(
    port: int,
    path: str,
    doc: Any,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = None if doc is None else json.dumps(doc)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body, hdrs)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


# --- OpenAI: embeddings -----------------------------------------------------------------------


def test_embeddings_float_vectors_follow_the_documented_formula(
    client: openai.OpenAI, oai: FakeOpenAI
) -> None:
    r = client.embeddings.create(
        model="text-embedding-3-small", input=["hello big world", "hi"], encoding_format="float"
    )
    assert r.object == "list" and r.model == "text-embedding-3-small"
    assert [d.index for d in r.data] == [0, 1]
    assert r.data[0].embedding == [_f32(k / 100 + 15 / 1000) for k in range(8)]
    assert r.data[1].embedding == [_f32(k / 100 + 2 / 1000) for k in range(8)]
    assert (r.usage.prompt_tokens, r.usage.total_tokens) == (4, 4)
    seen = oai.requests[-1]
    assert seen.path == "/v1/embeddings"
    assert seen.body == {
        "model": "text-embedding-3-small",
        "input": ["hello big world", "hi"],
        "encoding_format": "float",
    }
    assert seen.headers["authorization"] == "Bearer sk-fake"


def test_embeddings_base64_is_little_endian_float32_and_the_sdk_decodes_its_default(
    client: openai.OpenAI, oai: FakeOpenAI
) -> None:
    explicit = client.embeddings.create(
        model="m", input="one two", encoding_format="base64", dimensions=4
    )
    raw = explicit.data[0].embedding
    assert isinstance(raw, str)  # asked for base64 explicitly: the SDK hands the string back
    assert list(struct.unpack("<4f", base64.b64decode(raw))) == [
        _f32(k / 100 + 7 / 1000) for k in range(4)
    ]
    # without encoding_format the SDK asks for base64 and decodes it to floats itself
    implicit = client.embeddings.create(model="m", input="one two", dimensions=4)
    assert oai.requests[-1].body is not None
    assert oai.requests[-1].body["encoding_format"] == "base64"
    assert implicit.data[0].embedding == pytest.approx([k / 100 + 7 / 1000 for k in range(4)])


def test_embeddings_token_arrays_count_tokens(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model="m", input=[1, 2, 3, 4, 5], encoding_format="float")
    assert len(one.data) == 1 and one.usage.prompt_tokens == 5
    assert one.data[0].embedding[0] == _f32(5 / 1000)
    many = client.embeddings.create(model="m", input=[[1, 2], [3, 4, 5]], encoding_format="float")
    assert [d.embedding[1] for d in many.data] == [_f32(0.01 + 0.002), _f32(0.01 + 0.003)]
    assert many.usage.prompt_tokens == 5


def test_new_endpoints_answer_fake_error_models_with_the_openai_error_body(
    client: openai.OpenAI, oai_server: tuple[FakeOpenAI, ServerThread]
) -> None:
    with pytest.raises(openai.RateLimitError) as rl:
        client.embeddings.create(model="fake-error-429", input="x")
    assert rl.value.response.headers["retry-after"] == "2"
    assert rl.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError):
        client.images.generate(model="fake-error-500", prompt="cat")
    with pytest.raises(openai.NotFoundError) as nf:
        client.models.retrieve("fake-error-404")
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="fake-error-400", prompt="x")
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="fake-error-503", input="x")
    with pytest.raises(openai.AuthenticationError):
        client.audio.speech.create(model="fake-error-401", input="x", voice="alloy").read()
    with pytest.raises(openai.InternalServerError):
        client.audio.transcriptions.create(model="fake-error-502", file=("a.wav", b"RIFF"))
    status, _, body = _post(
        oai_server[1].port, "/v1/embeddings", {"model": "fake-error-503", "input": "x"}
    )
    assert status == 503 and json.loads(body)["error"]["type"] == "server_error"


def test_azure_deployment_paths_check_api_key_and_api_version(
    oai: FakeOpenAI, oai_server: tuple[FakeOpenAI, ServerThread]
) -> None:
    port = oai_server[1].port
    doc = {"input": "hello world"}
    path = "/openai/deployments/emb-dep/embeddings"
    assert _post(port, path, doc, {"api-key": "k"})[0] == 404  # no api-version
    assert _post(port, path + "?api-version=2024-10-21", doc)[0] == 401  # no api-key
    status, _, body = _post(port, path + "?api-version=2024-10-21", doc, {"api-key": "k"})
    assert status == 200 and len(json.loads(body)["data"][0]["embedding"]) == 8
    assert oai.requests[-1].query == "api-version=2024-10-21"
    # the deployment picks the scenario
    bad = "/openai/deployments/fake-error-429/embeddings?api-version=2024-10-21"
    assert _post(port, bad, doc, {"api-key": "k"})[0] == 429
    azure = openai.AzureOpenAI(
        azure_endpoint=oai_server[1].url,
        api_key="azure-key",
        api_version="2024-10-21",
        max_retries=0,
    )
    r = azure.completions.create(model="legacy-dep", prompt="hi there")
    assert r.choices[0].text == "fake: hi there"
    seen = oai.requests[-1]
    assert seen.path == "/openai/deployments/legacy-dep/completions"
    assert seen.headers["api-key"] == "azure-key"


# --- OpenAI: images, audio --------------------------------------------------------------------


def test_images_url_and_b64_json(client: openai.OpenAI, oai: FakeOpenAI) -> None:
    r = client.images.generate(model="dall-e-3", prompt="a red cat", n=2, size="1024x1024")
    assert r.data is not None
    assert [d.url for d in r.data] == [
        "https://fake.example/img/0.png",
        "https://fake.example/img/1.png",
    ]
    assert r.data[0].revised_prompt == "revised: a red cat" and r.usage is None
    b = client.images.generate(model="dall-e-2", prompt="a red cat", response_format="b64_json")
    assert b.data is not None and b.data[0].b64_json is not None
    assert base64.b64decode(b.data[0].b64_json) == b"PNG:a red cat"
    g = client.images.generate(model="gpt-image-1", prompt="a red cat")
    assert g.usage is not None and g.usage.input_tokens == 3 and g.usage.total_tokens == 103
    assert g.data is not None and g.data[0].b64_json is not None and g.data[0].url is None
    assert oai.requests[-1].body == {"model": "gpt-image-1", "prompt": "a red cat"}


def test_speech_streams_audio_in_chunks(client: openai.OpenAI, oai: FakeOpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", input="hello", voice="alloy"
    ) as resp:
        assert resp.headers["content-type"] == "audio/mpeg"
        pieces = list(resp.iter_bytes(chunk_size=4096))
    data = b"".join(pieces)
    assert len(data) == 64 * 1024 and data.startswith(b"ID3hellohello")
    assert oai.audio_chunks == [8]
    assert oai.requests[-1].body == {"model": "tts-1", "input": "hello", "voice": "alloy"}
    wav = client.audio.speech.create(model="tts-1", input="hi", voice="nova", response_format="wav")
    assert wav.response.headers["content-type"] == "audio/wav"
    assert wav.read().startswith(b"ID3hihi")


def test_speech_chunks_arrive_while_the_fake_is_still_sending(
    client: openai.OpenAI, oai: FakeOpenAI
) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", input="slow", voice="alloy", extra_body={"fake_delay": 0.05}
    ) as resp:
        it = resp.iter_bytes()
        first = next(it)
        assert first.startswith(b"ID3slow") and oai.audio_chunks == []  # not finished yet
        rest = b"".join(it)
    assert len(first) + len(rest) == 64 * 1024 and oai.audio_chunks == [8]


def test_transcription_parses_the_multipart_form(client: openai.OpenAI, oai: FakeOpenAI) -> None:
    audio = b"RIFF\x00\x01\r\n--not-a-boundary\r\n\xff" * 10
    r = client.audio.transcriptions.create(
        model="whisper-1", file=("talk.wav", audio, "audio/wav"), language="fr", temperature=0.2
    )
    assert r.text == f"transcript of talk.wav ({len(audio)} bytes)"
    assert r.usage is not None and r.usage.type == "duration"
    seen = oai.requests[-1]
    assert seen.path == "/v1/audio/transcriptions" and seen.body is None
    assert seen.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert seen.form is not None
    assert seen.form["file"] == {"filename": "talk.wav", "content_type": "audio/wav", "data": audio}
    assert (seen.form["model"], seen.form["language"], seen.form["temperature"]) == (
        "whisper-1",
        "fr",
        "0.2",
    )


def test_transcription_response_formats(client: openai.OpenAI) -> None:
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("a.mp3", b"abc"), response_format="text"
    )
    assert text == "transcript of a.mp3 (3 bytes)"
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=("a.mp3", b"abc"), response_format="verbose_json"
    )
    assert verbose.text == "transcript of a.mp3 (3 bytes)"
    assert verbose.language == "english" and verbose.duration == 1.0
    assert verbose.segments is not None and verbose.segments[0].text == verbose.text
    srt = client.audio.transcriptions.create(
        model="whisper-1", file=("a.mp3", b"abc"), response_format="srt"
    )
    assert "00:00:00,000 --> 00:00:01,000" in srt


# --- OpenAI: legacy completions, models ---------------------------------------------------------


def test_legacy_completion_plain(client: openai.OpenAI, oai: FakeOpenAI) -> None:
    r = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="say this", max_tokens=50, n=2
    )
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert [(c.index, c.text, c.finish_reason) for c in r.choices] == [
        (0, "fake: say this", "stop"),
        (1, "fake: say this", "stop"),
    ]
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (2, 6, 8)
    cut = client.completions.create(
        model="m", prompt="one two three four", max_tokens=2, echo=True, logprobs=1
    )
    assert cut.choices[0].text == "one two three fourfake: one"
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].logprobs is not None and cut.choices[0].logprobs.tokens is not None
    toks = client.completions.create(model="m", prompt=[[1, 2], [3]])
    assert [c.text for c in toks.choices] == ["fake: 1 2", "fake: 3"]
    assert oai.requests[-1].body == {"model": "m", "prompt": [[1, 2], [3]]}


def test_legacy_completion_stream(client: openai.OpenAI, oai: FakeOpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="m", prompt="hello big world", stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "fake: hello big world"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 7
    assert oai.chunks_sent[-1] == len(chunks)


def test_models_retrieve(client: openai.OpenAI, oai: FakeOpenAI) -> None:
    m = client.models.retrieve("gpt-4o-mini")
    assert (m.id, m.object, m.owned_by) == ("gpt-4o-mini", "model", "fake")
    assert oai.requests[-1].method == "GET" and oai.requests[-1].path == "/v1/models/gpt-4o-mini"
    assert [x.id for x in client.models.list()] == ["fake-plain"]  # the listing is unchanged


# --- OpenAI: responses --------------------------------------------------------------------------


def test_responses_plain_validates_as_the_sdk_response_model(
    client: openai.OpenAI, oai: FakeOpenAI
) -> None:
    r = client.responses.create(
        model="gpt-4o",
        instructions="be brief",
        input=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "input_text", "text": "hello big world"}]},
        ],
    )
    assert r.output_text == "fake: hello big world" and r.status == "completed"
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (7, 4, 11)
    assert r.usage.input_tokens_details.cached_tokens == 0
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    assert r.instructions == "be brief" and r.model == "gpt-4o"
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="hi").http_response
    Response.model_validate(raw.json())  # strict: every required field present and typed
    assert oai.requests[-1].path == "/v1/responses"
    assert oai.requests[-1].body == {"model": "gpt-4o", "input": "hi"}


def test_responses_tool_call(client: openai.OpenAI) -> None:
    tools: Any = [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": False,
        }
    ]
    r = client.responses.create(model="fake-tool", input="weather?", tools=tools)
    Response.model_validate(r.to_dict())
    item = r.output[0]
    assert item.type == "function_call"
    assert (item.name, item.arguments, item.call_id) == (
        "get_weather",
        '{"city":"Paris"}',
        "call_fake1",
    )
    followup = client.responses.create(
        model="gpt-4o",
        input=[
            {"role": "user", "content": "weather?"},
            {
                "type": "function_call",
                "call_id": "call_fake1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_fake1", "output": "sunny"},
        ],
    )
    assert followup.output_text == "fake: tool said sunny"


def test_responses_stream_events(client: openai.OpenAI, oai: FakeOpenAI) -> None:
    with client.responses.stream(model="gpt-4o", input="hello big world") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert types.count("response.output_text.delta") == 4  # one per word of the answer
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "fake: hello big world" and final.usage is not None
    raw = oai.requests[-1]
    assert raw.body is not None and raw.body["stream"] is True


def test_responses_stream_wire_has_event_lines_and_no_done(
    oai_server: tuple[FakeOpenAI, ServerThread],
) -> None:
    status, headers, body = _post(
        oai_server[1].port, "/v1/responses", {"model": "gpt-4o", "input": "hi", "stream": True}
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in body.decode().split("\n\n") if b]
    first = blocks[0].split("\n")
    assert first[0] == "event: response.created"
    assert json.loads(first[1].removeprefix("data: "))["sequence_number"] == 0
    assert blocks[-1].startswith("event: response.completed") and "[DONE]" not in body.decode()


def test_responses_stream_tool_call(client: openai.OpenAI) -> None:
    with client.responses.stream(model="fake-tool", input="weather?") as stream:
        types = [e.type for e in stream]
        final = stream.get_final_response()
    assert types.count("response.function_call_arguments.delta") == 2
    assert "response.function_call_arguments.done" in types
    assert "response.output_text.delta" not in types
    call = final.output[0]
    assert call.type == "function_call" and call.arguments == '{"city":"Paris"}'
    assert call.call_id == "call_fake1"


# --- Anthropic: count_tokens, full Messages requests -------------------------------------------


@pytest.fixture(scope="module")
def ant_server() -> Iterator[tuple[FakeAnthropic, ServerThread]]:
    yield from _serve(FakeAnthropic())


@pytest.fixture
def ant(ant_server: tuple[FakeAnthropic, ServerThread]) -> anthropic.Anthropic:
    ant_server[0].reset()
    return anthropic.Anthropic(
        base_url=ant_server[1].url, api_key="sk-ant-fake", max_retries=0, timeout=10
    )


WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_anthropic_count_tokens(
    ant: anthropic.Anthropic, ant_server: tuple[FakeAnthropic, ServerThread]
) -> None:
    fake = ant_server[0]
    r = ant.messages.count_tokens(
        model="claude-fake",
        system="you are terse",
        messages=[{"role": "user", "content": "hello big world"}],
        tools=[WEATHER_TOOL],
    )
    assert r.input_tokens == 3 + 3 + 10
    seen = fake.requests[-1]
    assert seen.path == "/v1/messages/count_tokens"
    # anthropic-python 2.x sends the api_key as a bearer token; the fake takes it or x-api-key
    assert seen.headers["authorization"] == "Bearer sk-ant-fake"
    assert seen.headers["anthropic-version"]
    assert seen.body == {
        "model": "claude-fake",
        "system": "you are terse",
        "messages": [{"role": "user", "content": "hello big world"}],
        "tools": [WEATHER_TOOL],
    }
    with pytest.raises(anthropic.RateLimitError):
        ant.messages.count_tokens(
            model="claude-error-429", messages=[{"role": "user", "content": "x"}]
        )
    port = ant_server[1].port
    hdrs = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    doc = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    status, _, body = _post(port, "/v1/messages/count_tokens", doc, hdrs)
    assert status == 400 and "max_tokens: Extra inputs" in json.loads(body)["error"]["message"]
    doc.pop("max_tokens")
    assert _post(port, "/v1/messages/count_tokens", doc, {"anthropic-version": "x"})[0] == 401


def test_anthropic_messages_accept_every_documented_field_untouched(
    ant: anthropic.Anthropic, ant_server: tuple[FakeAnthropic, ServerThread]
) -> None:
    fake = ant_server[0]
    png = base64.b64encode(b"\x89PNG fake").decode()
    messages: Any = [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [
                        {"type": "text", "text": "sunny"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": png},
                        },
                    ],
                },
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": png},
                },
                {"type": "text", "text": "and now?", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ]
    r = ant.messages.create(
        model="claude-fake",
        max_tokens=100,
        messages=messages,
        system=[{"type": "text", "text": "be terse"}],
        metadata={"user_id": "u-1"},
        stop_sequences=["STOP"],
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        service_tier="auto",
        extra_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"},
        # sampling knobs this SDK version no longer names, still documented request fields
        extra_body={"temperature": 0.5, "top_k": 5, "top_p": 0.9},
    )
    assert r.content[0].type == "text" and r.content[0].text == "fake: tool said sunny [images: 1]"
    seen = fake.requests[-1]
    assert seen.headers["anthropic-beta"] == "token-efficient-tools-2025-02-19"
    assert seen.body is not None
    assert seen.body["messages"] == messages
    assert seen.body["metadata"] == {"user_id": "u-1"}
    assert seen.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert seen.body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert (seen.body["top_k"], seen.body["stop_sequences"]) == (5, ["STOP"])
    # newer top-level fields the SDK sends are accepted too
    ant.messages.create(
        model="claude-fake",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        cache_control={"type": "ephemeral"},
        inference_geo="us",
        output_config={"effort": "low"},
    )
    assert fake.requests[-1].body is not None
    assert fake.requests[-1].body["inference_geo"] == "us"
    beta = ant.beta.messages.create(
        model="claude-fake",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        betas=["context-management-2025-06-27"],
        context_management={"edits": [{"type": "clear_tool_uses_20250919"}]},
    )
    assert beta.content[0].type == "text"
    assert fake.requests[-1].headers["anthropic-beta"] == "context-management-2025-06-27"


# --- Gemini: embeddings -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gem_server() -> Iterator[tuple[FakeGemini, ServerThread]]:
    yield from _serve(FakeGemini())


def test_gemini_embed_content(gem_server: tuple[FakeGemini, ServerThread]) -> None:
    fake, server = gem_server
    path = "/v1beta/models/gemini-embedding-001:embedContent"
    doc = {"content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 4}
    status, headers, body = _post(server.port, path, doc, {"x-goog-api-key": "AIza-fake"})
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == {
        "embedding": {"values": [round(k / 100 + 11 / 1000, 6) for k in range(4)]}
    }
    assert fake.requests[-1].body == doc and fake.requests[-1].path == path
    assert _post(server.port, path, doc)[0] == 403  # no key
    assert _post(server.port, path, doc, {"x-goog-api-key": "invalid-k"})[0] == 400
    bad = {**doc, "dimensions": 3}
    status, _, body = _post(server.port, path, bad, {"x-goog-api-key": "k"})
    assert status == 400 and 'Unknown name "dimensions"' in json.loads(body)["error"]["message"]
    err = "/v1beta/models/gemini-error-429:embedContent"
    status, headers, _ = _post(server.port, err, doc, {"x-goog-api-key": "k"})
    assert status == 429 and headers["retry-after"] == "7"


def test_gemini_batch_embed_contents(gem_server: tuple[FakeGemini, ServerThread]) -> None:
    _, server = gem_server
    path = "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    doc = {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "a"}]},
                "taskType": "RETRIEVAL_DOCUMENT",
            },
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "bcd"}]},
                "outputDimensionality": 2,
            },
        ]
    }
    status, _, body = _post(server.port, path, doc, {"x-goog-api-key": "k"})
    assert status == 200
    got = json.loads(body)["embeddings"]
    assert [len(e["values"]) for e in got] == [8, 2]
    assert got[1]["values"] == [0.003, 0.013]
    doc["requests"][0]["model"] = "models/other"
    assert _post(server.port, path, doc, {"x-goog-api-key": "k"})[0] == 400


# --- Cohere: embed --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def co_server() -> Iterator[tuple[FakeCohere, ServerThread]]:
    yield from _serve(FakeCohere())


def test_cohere_embed(co_server: tuple[FakeCohere, ServerThread]) -> None:
    fake, server = co_server
    doc = {
        "model": "embed-v4.0",
        "texts": ["hello world", "hi"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 4,
    }
    auth = {"Authorization": "Bearer co-fake"}
    status, _, body = _post(server.port, "/v2/embed", doc, auth)
    assert status == 200
    got = json.loads(body)
    assert got["response_type"] == "embeddings_by_type" and got["texts"] == doc["texts"]
    assert got["embeddings"]["float"] == [
        [round(k / 100 + 11 / 1000, 6) for k in range(4)],
        [round(k / 100 + 2 / 1000, 6) for k in range(4)],
    ]
    assert got["meta"] == {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 3}}
    assert isinstance(got["id"], str) and fake.requests[-1].body == doc
    assert _post(server.port, "/v2/embed", doc)[0] == 401
    two = {**doc, "embedding_types": ["float", "int8"]}
    got = json.loads(_post(server.port, "/v2/embed", two, auth)[2])
    assert set(got["embeddings"]) == {"float", "int8"}
    assert _post(server.port, "/v2/embed", {**doc, "input_type": None}, auth)[0] == 400
    assert _post(server.port, "/v2/embed", {**doc, "bogus": 1}, auth)[0] == 400
    status, headers, body = _post(
        server.port, "/v2/embed", {**doc, "model": "embed-error-429"}, auth
    )
    assert status == 429 and headers["retry-after"] == "7" and json.loads(body)["message"]
