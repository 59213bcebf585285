"""``nexus serve`` / ``nexus chat`` with a multimodal composite: images and audio in, a reply out.

A tiny random composite (Llama + DINOv2 + Whisper, built from configs by tests/unit/test_omni_model.py's
builder and saved with ``compose.save_omni``) is served on 127.0.0.1 with a free port, in a thread of
this process, once for the module. Replies are checked against the composite's own greedy decode of
the same prompt and media (:func:`nexus.multimodal.generate.generate_media`). Its text model's weights
are drawn at std 0.3 (as test_omni_model's ``sharp_lm_dir``): at the usual 0.02 every reply is the same
run of newlines, so a reply could not show that the media reached the model.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request
import wave
from pathlib import Path

import pytest

from nexus.serving.models import Modalities
from tests.serving import running_server
from tests.unit.test_omni_model import build_tiny_omni, square

openai = pytest.importorskip("openai", reason="the openai client is a test dependency: pip install openai")

pytestmark = pytest.mark.omni

NAME = "tiny-omni"
NEW_TOKENS = 6
QUESTION = "What is shown?"


def png_url(value: int) -> str:
    buffer = io.BytesIO()
    square(value).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def wav_bytes(seconds: float = 1.0, rate: int = 16000) -> bytes:
    import numpy

    t = numpy.arange(int(seconds * rate)) / rate
    samples = (numpy.sin(2 * numpy.pi * 440 * t) * 12000).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buffer.getvalue()


WAV_B64 = base64.b64encode(wav_bytes()).decode("ascii")
IMAGE_PART = {"type": "image_url", "image_url": {"url": png_url(200)}}
AUDIO_PART = {"type": "input_audio", "input_audio": {"data": WAV_B64, "format": "wav"}}


def user(*parts) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


def sharp_lm(tiny_model_dir: Path, out: Path) -> Path:
    """The tiny Llama's shape and tokenizer with weights drawn at std 0.3 (replies depend on the input)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(tiny_model_dir)
    config.initializer_range = 0.3
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def composite_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nexus.multimodal.compose import save_omni

    root = tmp_path_factory.mktemp("serving_media")
    model, processor = build_tiny_omni(sharp_lm(tiny_model_dir, root / "lm"), root)
    return save_omni(model, processor, root / NAME)


@pytest.fixture(scope="module")
def composite(composite_dir: Path):
    from nexus.multimodal.compose import load_omni

    return load_omni(composite_dir)


def reference(composite, prompt: str, images=(), audios=()) -> str:
    """The composite's greedy reply to one user message with media (refs: data URLs)."""
    from nexus.multimodal.generate import generate_media

    model, processor = composite
    example = {"prompt": [{"role": "user", "content": prompt}], "images": list(images), "audios": list(audios)}
    return generate_media(model, processor, [example], NEW_TOKENS)[0]


@pytest.fixture(scope="module")
def server(composite_dir: Path):
    """The base URL of a server of the composite; stopped (and its exit code checked) after the module."""
    with running_server(composite_dir, NAME, NEW_TOKENS) as url:
        yield url


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server, api_key="none", timeout=60, max_retries=0) as c:
        yield c


def post(base: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


# --- the HTTP server ----------------------------------------------------------------------------


def test_an_image_data_url_is_answered_as_the_composite_decodes_it(server, composite):
    status, body = post(server, {"messages": user({"type": "text", "text": QUESTION}, IMAGE_PART)})
    assert status == 200, body
    reply = body["choices"][0]["message"]["content"]
    assert reply == reference(composite, QUESTION + "<image>", images=[IMAGE_PART["image_url"]["url"]])
    assert reply != reference(composite, QUESTION + "<image>", images=[png_url(10)])  # the image counts
    _, processor = composite
    assert body["usage"]["prompt_tokens"] > processor.image_tokens  # the image's tokens are in the prompt


def test_input_audio_is_answered_as_the_composite_decodes_it(server, composite):
    status, body = post(server, {"messages": user(AUDIO_PART, {"type": "text", "text": "What is heard?"})})
    assert status == 200, body
    expected = reference(composite, "<audio>What is heard?", audios=["data:audio/wav;base64," + WAV_B64])
    assert body["choices"][0]["message"]["content"] == expected != reference(composite, "What is heard?")


def test_models_list_the_modalities(server):
    with urllib.request.urlopen(server + "/models", timeout=30) as response:
        (card,) = json.load(response)["data"]
    assert card["id"] == NAME and card["modalities"] == ["text", "image", "audio"]


def test_the_openai_client_sends_an_image_streamed_and_not(client, composite):
    messages = user({"type": "text", "text": QUESTION}, IMAGE_PART)
    full = client.chat.completions.create(model=NAME, messages=messages)
    assert full.choices[0].message.content == reference(composite, QUESTION + "<image>",
                                                         images=[IMAGE_PART["image_url"]["url"]])
    chunks = list(client.chat.completions.create(model=NAME, messages=messages, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason


def _as_dict(value) -> dict:
    """An SDK object (the client types ``delta.audio``) or a plain dict, as a dict."""
    return value if isinstance(value, dict) else value.model_dump()


def _wav(data: str) -> tuple[int, int]:
    """(rate, frames) of a base64 WAV chunk."""
    with wave.open(io.BytesIO(base64.b64decode(data)), "rb") as w:
        return w.getframerate(), w.getnframes()


def test_the_openai_client_streams_text_and_speech_for_an_image_and_a_clip(client):
    """Tri-streaming: an image and a clip in; text deltas and sentence audio (each a WAV) out, while
    the text streams; the finish chunk carries the measurements."""
    messages = user({"type": "text", "text": QUESTION}, IMAGE_PART, AUDIO_PART)
    chunks = list(client.chat.completions.create(model=NAME, messages=messages, stream=True, max_tokens=12,
                                                 modalities=["text", "audio"],
                                                 audio={"voice": "heart", "format": "wav"}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    text = "".join(d.content or "" for d in deltas)
    assert sum(1 for d in deltas if d.content) > 1  # the text streamed in more than one chunk
    audio = [_as_dict(d.audio) for d in deltas if getattr(d, "audio", None)]
    assert audio, "no audio chunk came back"
    for part in audio:
        rate, frames = _wav(part["data"])
        assert rate == 24000 and frames > 0 and part["id"] == audio[0]["id"] and part["transcript"].strip()
    assert " ".join(p["transcript"] for p in audio).split() == text.split()  # every sentence was spoken
    metrics = (chunks[-1].model_extra or {}).get("nexus_metrics") or (chunks[-2].model_extra or {})["nexus_metrics"]
    assert 0 <= metrics["first_text_s"] <= metrics["first_audio_s"] and metrics["audio_s"] > 0


def test_a_spoken_reply_without_streaming_holds_one_wav(client):
    full = client.chat.completions.create(model=NAME, messages=user({"type": "text", "text": QUESTION}, AUDIO_PART),
                                          modalities=["text", "audio"], audio={"voice": "joe", "format": "wav"})
    message = full.choices[0].message
    rate, frames = _wav(message.audio.data)
    assert rate == 22050 and frames > 0 and message.audio.transcript == message.content
    raw = client.chat.completions.create(model=NAME, messages=user({"type": "text", "text": QUESTION}),
                                         modalities=["text", "audio"], audio={"voice": "heart", "format": "pcm16"})
    pcm = base64.b64decode(raw.choices[0].message.audio.data)  # bare 16-bit samples: no RIFF header
    assert pcm and len(pcm) % 2 == 0 and not pcm.startswith(b"RIFF")


@pytest.mark.parametrize(("messages", "param", "words"), [
    (user({"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "https://x.org/a.png"}}),
     "messages[0].content[1]", "not fetched"),
    (user({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}),
     "messages[0].content[0]", "invalid base64"),
    (user({"type": "image_url", "image_url": {"url": "data:image/png;base64," + WAV_B64}}),
     "messages[0].content[0]", "cannot read image"),
    (user({"type": "image_url", "image_url": {"url": "/etc/hosts"}}), "messages[0].content[0]", "data URL"),
    (user({"type": "input_audio", "input_audio": {"data": "not base64!", "format": "wav"}}),
     "messages[0].content[0]", "not valid base64"),
    (user({"type": "input_audio", "input_audio": {"data": base64.b64encode(b"noise" * 40).decode(),
                                                  "format": "mp3"}}),
     "messages[0].content[0]", "input_audio (mp3): cannot decode audio"),
    (user({"type": "text", "text": "a <image> typed"}), "messages[0].content[0]", "placeholder"),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [IMAGE_PART]},
      {"role": "user", "content": "And?"}], "messages[1].content[0]", "user messages"),
    (user({"type": "file", "file": {"file_data": "x"}}), "messages[0].content[0]", "not supported"),
    (user({"type": "input_audio", "input_audio": {"data": WAV_B64, "format": "aiff"}}),
     "messages[0].content[0]", "aiff"),
])
def test_bad_media_are_refused_naming_the_part(server, messages, param, words):
    status, body = post(server, {"messages": messages})
    assert status == 400, body
    assert body["error"]["param"] == param and words in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("extra", "param", "words"), [
    ({"modalities": ["text", "video"]}, "modalities", "must be"),
    ({"modalities": ["text", "audio"]}, "audio", "give 'audio'"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "audio.voice", "heart"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "heart", "format": "opus"}}, "audio.format", "pcm16"),
])
def test_bad_audio_output_requests_are_refused_naming_the_field(server, extra, param, words):
    status, body = post(server, {"messages": [{"role": "user", "content": "Hi"}], **extra})
    assert status == 400 and body["error"]["param"] == param and words in body["error"]["message"], body


def test_a_prompt_over_the_context_is_refused_and_the_server_keeps_serving(server):
    status, body = post(server, {"messages": user({"type": "text", "text": "word " * 5000}, IMAGE_PART)})
    assert status == 400 and body["error"]["code"] == "context_length_exceeded", body
    status, body = post(server, {"messages": user({"type": "text", "text": QUESTION}, IMAGE_PART)})
    assert status == 200 and body["choices"][0]["message"]["content"] is not None


def test_media_for_a_text_model_are_refused_as_text_only(tiny_model_dir):
    from nexus.serving import ChatServer, ChatService, load_chat_model

    model, tokenizer = load_chat_model(tiny_model_dir, device="cpu")
    server = ChatServer(ChatService(model, tokenizer, "tiny-llama", NEW_TOKENS), port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        for part in (IMAGE_PART, AUDIO_PART):
            status, body = post(server.url, {"messages": user({"type": "text", "text": "Hi"}, part)})
            assert status == 400 and body["error"]["param"] == "messages[0].content"
            assert "images, audio and files are not supported" in body["error"]["message"]
            assert "takes text only" in body["error"]["message"]
        with urllib.request.urlopen(server.url + "/models", timeout=30) as response:
            assert "modalities" not in json.load(response)["data"][0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- loading and the REPL -------------------------------------------------------------------------


def test_a_llava_folder_serves_images_and_refuses_audio(composite, tmp_path: Path):
    from nexus.multimodal.compose import export_llava
    from nexus.serving import RequestError, load_chat_model, parse_chat_request
    from nexus.serving.models import model_modalities

    model, processor = load_chat_model(export_llava(*composite, tmp_path / "llava"), device="cpu")
    modalities = model_modalities(processor)
    assert modalities == Modalities(image=True, audio=False, sampling_rate=modalities.sampling_rate)
    request = parse_chat_request({"messages": user(IMAGE_PART)}, modalities=modalities)
    assert request.messages == [{"role": "user", "content": "<image>"}] and len(request.images) == 1
    with pytest.raises(RequestError, match="takes text and images only; it has no audio encoder") as info:
        parse_chat_request({"messages": user(AUDIO_PART)}, modalities=modalities)
    assert info.value.param == "messages[0].content[0]"


def test_chat_session_attaches_media_to_the_next_message(composite, tmp_path: Path, tiny_model_dir):
    from nexus.serving import ChatSession, load_chat_model

    image = tmp_path / "grey.png"
    square(200).save(image)
    audio = tmp_path / "tone.wav"
    audio.write_bytes(wav_bytes())
    model, processor = composite
    session = ChatSession(model, processor, max_new_tokens=NEW_TOKENS)
    session.attach("image", str(image))
    session.attach("audio", str(audio))
    reply = "".join(session.send(QUESTION))
    assert session.history[0]["content"] == "<image><audio>" + QUESTION
    assert reply == reference(composite, "<image><audio>" + QUESTION, images=[str(image)], audios=[str(audio)])
    "".join(session.send("And now?"))  # the first message's media stay with it
    assert [len(i) + len(a) for i, a in session.media] == [2, 0, 0, 0]
    with pytest.raises(ValueError, match="placeholder"):
        "".join(session.send("see <image>"))
    session.reset()
    assert session.history == [] and session.media == []

    text_model, tokenizer = load_chat_model(tiny_model_dir, device="cpu")
    with pytest.raises(ValueError, match="takes text only; /image needs a multimodal composite"):
        ChatSession(text_model, tokenizer).attach("image", str(image))


def test_chat_repl_takes_image_and_help_says_so(composite_dir: Path, composite, tmp_path: Path):
    from nexus.serving import chat_repl

    image = tmp_path / "grey.png"
    square(200).save(image)
    out = io.StringIO()
    stdin = io.StringIO(f"/image {image}\n{QUESTION}\n/audio {tmp_path / 'missing.wav'}\n/image\n/help\n")
    assert chat_repl(composite_dir, NEW_TOKENS, stdin=stdin, stdout=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == f"(image {image} attached to your next message)"
    expected = reference(composite, "<image>" + QUESTION, images=[str(image)])
    assert out.getvalue().split("\n", 1)[1].startswith(expected + "\n")
    assert lines[-3].startswith("error: ") and "missing.wav" in lines[-3]
    assert lines[-2].startswith("usage: /image PATH")
    assert "/image PATH or /audio PATH" in lines[-1] and "text, images and audio" in lines[-1]
