"""The official openai SDK against the gateway's other OpenAI endpoints: completions,
embeddings (float, base64; OpenAI-style, Gemini and Cohere upstreams), images, speech,
transcription, models and the Responses API (passed through to OpenAI, translated otherwise).

Upstreams are the fakes in tests/fakes/ (their docstrings cite each wire format's docs):
https://platform.openai.com/docs/api-reference/{completions,embeddings,images,audio,models,
responses}, https://ai.google.dev/api/embeddings, https://docs.cohere.com/reference/embed.
"""

from __future__ import annotations

import base64
import http.client
import json
import struct
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, RunningGateway
from tests.fakes.openai import FakeOpenAI

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def _config(openai_url: str, gemini_url: str, cohere_url: str) -> str:
    return f"""\
master_key: {MASTER_KEY}
providers:
  - name: fakeai
    type: openai
    base_url: {openai_url}/v1
    api_key: sk-fake-openai-upstream
  - name: vllm  # an OpenAI-compatible server: native completions, translated responses
    type: openai
    base_url: {openai_url}/v1
  - name: gem
    type: gemini
    base_url: {gemini_url}/v1beta
    api_key: fake-gemini-key-123456
  - name: co
    type: cohere
    base_url: {cohere_url}
    api_key: fake-cohere-key-123456
models:
  - {{name: gpt-test, provider: fakeai, model: fake-plain}}
  - {{name: tool-model, provider: fakeai, model: fake-tool}}
  - {{name: text-embedding-3-small, provider: fakeai, model: text-embedding-3-small}}
  - {{name: embed-alias, provider: fakeai, model: text-embedding-3-large}}
  - {{name: gemini-embed, provider: gem, model: text-embedding-004}}
  - {{name: cohere-embed, provider: co, model: embed-v4.0}}
  - {{name: gpt-image-1, provider: fakeai, model: gpt-image-1}}
  - {{name: dall-e-3, provider: fakeai, model: dall-e-3}}
  - {{name: tts-1, provider: fakeai, model: tts-1}}
  - {{name: whisper-1, provider: fakeai, model: whisper-1}}
  - {{name: whisper-alias, provider: fakeai, model: whisper-large}}
  - {{name: gpt-3.5-turbo-instruct, provider: fakeai, model: gpt-3.5-turbo-instruct}}
  - {{name: local-llama, provider: vllm, model: llama-3}}
  - {{name: compat-chat, provider: vllm, model: fake-plain}}
  - {{name: compat-tool, provider: vllm, model: fake-tool}}
  - {{name: gpt-native, provider: fakeai, model: gpt-native-up}}
  - {{name: gemini-chat, provider: gem, model: gemini-2.0-flash}}
  - {{name: e500, provider: fakeai, model: fake-error-500}}
  - {{name: tts-cut, provider: fakeai, model: fake-reset}}
  - name: resp-failover
    deployments:
      - {{provider: vllm, model: fake-early-error}}
      - {{provider: vllm, model: fake-plain}}
"""


@pytest.fixture
def env(
    gateway_factory: Any,
    fake_upstream: tuple[FakeOpenAI, str],
    fake_gemini_upstream: tuple[Any, str],
    fake_cohere_upstream: tuple[Any, str],
) -> tuple[openai.OpenAI, FakeOpenAI, RunningGateway]:
    fake = fake_upstream[0]
    fake.reset()
    fake_gemini_upstream[0].reset()
    fake_cohere_upstream[0].reset()
    gw = gateway_factory(
        _config(fake_upstream[1], fake_gemini_upstream[1], fake_cohere_upstream[1])
    )
    return gw.client(), fake, gw


def _floats(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# --- embeddings -----------------------------------------------------------------------------


def test_embeddings_float_list_input_passes_through(env: Any) -> None:
    client, fake, _ = env
    r = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert [d.index for d in r.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in r.data)
    assert r.data[0].embedding != r.data[1].embedding
    assert r.model == "text-embedding-3-small"
    assert r.usage.prompt_tokens == 3 and r.usage.total_tokens == 3
    seen = fake.requests[-1]
    assert seen.path == "/v1/embeddings"
    assert seen.body == {
        "model": "text-embedding-3-small",
        "input": ["hello world", "bye"],
        "encoding_format": "base64",  # the SDK asks for base64 and decodes it itself
    }


def test_embeddings_base64_and_token_arrays(env: Any) -> None:
    client, fake, gw = env
    status, _, body = gw.post_raw(
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": "hello", "encoding_format": "base64"},
    )
    assert status == 200
    doc = json.loads(body)
    vec = _floats(doc["data"][0]["embedding"])
    assert len(vec) == 8
    plain = client.embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="float"
    )
    assert vec == pytest.approx(plain.data[0].embedding, rel=1e-6)
    tokens = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert len(tokens.data) == 2
    assert fake.requests[-1].body["input"] == [[1, 2, 3], [4, 5]]  # type: ignore[index]


def test_embeddings_alias_swaps_the_model_both_ways(env: Any) -> None:
    client, fake, _ = env
    r = client.embeddings.create(model="embed-alias", input="x", dimensions=4)
    assert r.model == "embed-alias" and len(r.data[0].embedding) == 4
    assert fake.requests[-1].body["model"] == "text-embedding-3-large"  # type: ignore[index]


def test_embeddings_translated_to_gemini(env: Any, fake_gemini_upstream: Any) -> None:
    client, _, _ = env
    gem = fake_gemini_upstream[0]
    r = client.embeddings.create(model="gemini-embed", input=["alpha", "beta gamma"])
    assert len(r.data) == 2 and r.model == "gemini-embed"
    assert r.data[0].embedding != r.data[1].embedding
    seen = gem.requests[-1]
    assert seen.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert [q["content"]["parts"][0]["text"] for q in seen.body["requests"]] == [
        "alpha",
        "beta gamma",
    ]
    assert seen.headers["x-goog-api-key"] == "fake-gemini-key-123456"
    b64 = client.embeddings.create(model="gemini-embed", input="alpha", encoding_format="float")
    assert b64.data[0].embedding == pytest.approx(r.data[0].embedding, rel=1e-6)


def test_embeddings_translated_to_cohere(env: Any, fake_cohere_upstream: Any) -> None:
    client, _, _ = env
    co = fake_cohere_upstream[0]
    r = client.embeddings.create(model="cohere-embed", input=["alpha", "beta"])
    assert len(r.data) == 2 and r.usage.prompt_tokens == 2  # Cohere's billed_units (words)
    seen = co.requests[-1]
    assert seen.path == "/v2/embed"
    assert seen.body["texts"] == ["alpha", "beta"]
    assert seen.body["embedding_types"] == ["float"]


def test_embeddings_bad_input(env: Any) -> None:
    _, _, gw = env
    for doc, param in (
        ({"model": "text-embedding-3-small"}, "input"),
        ({"model": "text-embedding-3-small", "input": []}, "input"),
        ({"model": "text-embedding-3-small", "input": [1, "a"]}, "input"),
        ({"model": "text-embedding-3-small", "input": "a", "encoding_format": "hex"}, None),
        ({"input": "a"}, "model"),
    ):
        status, _, body = gw.post_raw("/v1/embeddings", doc)
        assert status == 400, body
        err = json.loads(body)["error"]
        assert set(err) >= {"message", "type", "param", "code"}
        if param:
            assert err["param"] == param
    # Token ids mean nothing to another tokenizer: Gemini cannot take them.
    status, _, body = gw.post_raw("/v1/embeddings", {"model": "gemini-embed", "input": [1, 2]})
    assert status == 400 and json.loads(body)["error"]["code"] == "unsupported_endpoint"
    status, _, body = gw.post_raw("/v1/embeddings", {"model": "e500", "input": "x"})
    assert status == 502


# --- images ---------------------------------------------------------------------------------


def test_images_url_and_b64(env: Any) -> None:
    client, fake, _ = env
    r = client.images.generate(model="dall-e-3", prompt="a lighthouse", n=2)
    assert len(r.data) == 2 and all(d.url and d.url.startswith("https://") for d in r.data)
    assert fake.requests[-1].path == "/v1/images/generations"
    assert fake.requests[-1].body == {"model": "dall-e-3", "prompt": "a lighthouse", "n": 2}
    b = client.images.generate(model="gpt-image-1", prompt="a cat", response_format="b64_json")
    assert b.data is not None and b.data[0].b64_json
    assert base64.b64decode(b.data[0].b64_json).startswith(b"PNG:")


def test_images_unsupported_provider_is_a_clear_400(env: Any) -> None:
    client, _, _ = env
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="gemini-chat", prompt="x")
    body: Any = info.value.body
    assert body["code"] == "unsupported_endpoint"


# --- audio ----------------------------------------------------------------------------------


def test_speech_bytes_are_streamed_back(env: Any) -> None:
    client, fake, _ = env
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", input="hello there", voice="alloy"
    ) as r:
        assert r.headers["content-type"].startswith("audio/")
        parts = list(r.iter_bytes(4096))
    audio = b"".join(parts)
    assert audio.startswith(b"ID3") and b"hello there" in audio
    assert len(audio) >= 60_000
    assert fake.requests[-1].path == "/v1/audio/speech"
    assert fake.requests[-1].body["voice"] == "alloy"  # type: ignore[index]


def test_transcription_multipart_upload(env: Any) -> None:
    client, fake, _ = env
    t = client.audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", b"RIFF" + b"\x00" * 100, "audio/wav"), language="en"
    )
    assert t.text == "transcript of clip.wav (104 bytes)"
    seen = fake.requests[-1]
    assert seen.path == "/v1/audio/transcriptions"
    assert seen.form is not None and seen.form["model"] == "whisper-1"
    assert seen.form["language"] == "en"
    # Another upstream model: the upload is re-encoded with its id, the file unchanged.
    t2 = client.audio.transcriptions.create(
        model="whisper-alias", file=("b.mp3", b"ID3abc", "audio/mpeg")
    )
    assert t2.text == "transcript of b.mp3 (6 bytes)"
    assert fake.requests[-1].form["model"] == "whisper-large"  # type: ignore[index]
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("c.wav", b"RIFFxx", "audio/wav"), response_format="text"
    )
    assert isinstance(text, str) and "c.wav" in text


def test_speech_cut_mid_audio_reaches_the_client_as_a_cut(env: Any) -> None:
    _, _, gw = env
    conn = http.client.HTTPConnection("127.0.0.1", gw.server.port, timeout=20)
    body = json.dumps({"model": "tts-cut", "input": "hello", "voice": "alloy"})
    conn.request("POST", "/v1/audio/speech", body, {"Authorization": f"Bearer {MASTER_KEY}"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("content-type") == "audio/mpeg"
    with pytest.raises(http.client.IncompleteRead) as info:
        r.read()  # never a clean end of a truncated file
    assert info.value.partial.startswith(b"ID3")
    conn.close()


def test_transcription_refuses_a_field_given_twice(env: Any) -> None:
    _, fake, gw = env
    n = len(fake.requests)
    form = (
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o-transcribe\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\nRIFF\r\n--b--\r\n"
    )
    conn = http.client.HTTPConnection("127.0.0.1", gw.server.port, timeout=20)
    conn.request(
        "POST",
        "/v1/audio/transcriptions",
        form,
        {
            "Authorization": f"Bearer {MASTER_KEY}",
            "Content-Type": "multipart/form-data; boundary=b",
        },
    )
    r = conn.getresponse()
    err = json.loads(r.read())["error"]
    conn.close()
    assert r.status == 400 and err["param"] == "model"
    assert len(fake.requests) == n  # nothing went upstream


def test_transcription_needs_multipart_and_a_file(env: Any) -> None:
    _, _, gw = env
    status, _, body = gw.post_raw("/v1/audio/transcriptions", {"model": "whisper-1"})
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_content_type"


# --- completions ----------------------------------------------------------------------------


def test_completions_translated_to_chat(env: Any) -> None:
    client, fake, _ = env
    r = client.completions.create(model="gpt-test", prompt="say hi", max_tokens=20, echo=True)
    assert r.object == "text_completion"
    assert r.choices[0].text == "say hifake: say hi"
    assert r.choices[0].finish_reason == "stop" and r.model == "gpt-test"
    seen = fake.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.body["messages"] == [{"role": "user", "content": "say hi"}]  # type: ignore[index]
    assert seen.body["max_tokens"] == 20  # type: ignore[index]


def test_completions_stream_translated(env: Any) -> None:
    client, _, _ = env
    chunks = list(
        client.completions.create(
            model="gpt-test",
            prompt="stream me",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "fake: stream me"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_completions_native_for_instruct_models_and_local_servers(env: Any) -> None:
    client, fake, _ = env
    r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello", max_tokens=5)
    assert fake.requests[-1].path == "/v1/completions"
    assert r.choices[0].text == "fake: hello" and r.model == "gpt-3.5-turbo-instruct"
    many = client.completions.create(model="local-llama", prompt=["a", "b"], max_tokens=5)
    assert fake.requests[-1].path == "/v1/completions"
    assert fake.requests[-1].body["model"] == "llama-3"  # type: ignore[index]
    assert [c.text for c in many.choices] == ["fake: a", "fake: b"]  # one per prompt
    streamed = list(
        client.completions.create(model="local-llama", prompt="x y", stream=True, max_tokens=5)
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "fake: x y"


def test_completions_batched_prompts_need_a_native_deployment(env: Any) -> None:
    client, _, _ = env
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="gpt-test", prompt=["a", "b"])
    body: Any = info.value.body
    assert body["code"] == "unsupported_endpoint"


# --- models ---------------------------------------------------------------------------------


def test_models_list_and_retrieve(env: Any) -> None:
    client, _, _ = env
    ids = [m.id for m in client.models.list()]
    assert "gpt-test" in ids and "mock/echo" in ids and "whisper-alias" in ids
    m = client.models.retrieve("gpt-test")
    assert m.id == "gpt-test" and m.owned_by == "fakeai" and m.object == "model"
    assert client.models.retrieve("mock/echo").owned_by == "mock"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("nope")
    body: Any = info.value.body
    assert body["code"] == "model_not_found"


# --- responses ------------------------------------------------------------------------------


def test_responses_translated_plain_with_instructions(env: Any) -> None:
    client, fake, _ = env
    r = client.responses.create(
        model="compat-chat",
        instructions="be brief",
        input=[{"role": "user", "content": "hello big world"}],
    )
    assert r.object == "response" and r.status == "completed"
    assert r.output_text == "fake: hello big world"
    assert r.model == "compat-chat"
    assert r.usage is not None and r.usage.input_tokens == 5
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"] == [  # type: ignore[index]
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello big world"},
    ]


def test_responses_translated_stream(env: Any) -> None:
    client, _, _ = env
    kinds: list[str] = []
    with client.responses.stream(model="compat-chat", input="stream this") as s:
        for event in s:
            kinds.append(event.type)
        final = s.get_final_response()
    assert final.output_text == "fake: stream this"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert final.usage is not None and final.usage.output_tokens > 0


def test_responses_translated_tool_call_round_trip(env: Any) -> None:
    client, fake, _ = env
    r = client.responses.create(model="compat-tool", input="weather in Paris?", tools=[WEATHER])
    call = next(o for o in r.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] == "Paris"
    assert call.call_id == "call_fake123"
    assert fake.requests[-1].body["tools"][0]["function"]["name"] == "get_weather"  # type: ignore[index]
    follow = client.responses.create(
        model="compat-chat",
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert follow.output_text == "fake: weather in Paris?"
    msgs = fake.requests[-1].body["messages"]  # type: ignore[index]
    assert msgs[1]["tool_calls"][0]["id"] == "call_fake123"
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_fake123", "content": "sunny"}


def test_responses_passthrough_to_openai(env: Any) -> None:
    client, fake, _ = env
    r = client.responses.create(
        model="gpt-native", input="hello native", previous_response_id="resp_abc"
    )
    assert r.output_text == "fake: hello native" and r.model == "gpt-native"
    seen = fake.requests[-1]
    assert seen.path == "/v1/responses"
    # Stateful fields go to OpenAI, which keeps the state; only the model id is swapped.
    assert seen.body == {
        "model": "gpt-native-up",
        "input": "hello native",
        "previous_response_id": "resp_abc",
    }
    assert seen.headers["authorization"] == "Bearer sk-fake-openai-upstream"


def test_responses_passthrough_stream_and_tool_call(env: Any) -> None:
    client, fake, _ = env
    kinds: list[str] = []
    with client.responses.stream(model="gpt-native", input="native stream") as s:
        for event in s:
            kinds.append(event.type)
        final = s.get_final_response()
    assert final.output_text == "fake: native stream"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert fake.requests[-1].body["stream"] is True  # type: ignore[index]
    r = client.responses.create(model="tool-model", input="weather?", tools=[WEATHER])
    call = next(o for o in r.output if o.type == "function_call")
    assert (call.name, call.call_id, json.loads(call.arguments)) == (
        "get_weather",
        "call_fake1",
        {"city": "Paris"},
    )
    assert fake.requests[-1].path == "/v1/responses"


def test_responses_translated_stream_fails_over_on_an_early_error_event(env: Any) -> None:
    client, fake, _ = env
    with client.responses.stream(model="resp-failover", input="hello again") as s:
        final = s.get_final_response()
    assert final.output_text == "fake: hello again"
    assert [r.body["model"] for r in fake.requests[-2:]] == [  # type: ignore[index]
        "fake-early-error",
        "fake-plain",
    ]


def test_responses_stateful_fields_need_openai(env: Any) -> None:
    client, _, _ = env
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="compat-chat", input="x", previous_response_id="resp_1")
    body: Any = info.value.body
    assert body["param"] == "previous_response_id"


def test_responses_passthrough_of_a_budgeted_key_is_capped_at_its_reservation(env: Any) -> None:
    client, fake, gw = env
    from tests.integration.accounts import new_key

    key = new_key(gw.url, max_budget=5.0)["key"]
    own = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=20)
    own.responses.create(model="gpt-native", input="hello")
    cap = gw.gw.runtime.settings.spend.reserve_max_tokens
    assert fake.requests[-1].body == {
        "model": "gpt-native-up",
        "input": "hello",
        "max_output_tokens": cap,
    }
    own.responses.create(model="gpt-native", input="hello", max_output_tokens=50)
    assert fake.requests[-1].body["max_output_tokens"] == 50  # type: ignore[index]
    client.responses.create(model="gpt-native", input="hello")  # the master key: no budget
    assert "max_output_tokens" not in fake.requests[-1].body  # type: ignore[operator]
