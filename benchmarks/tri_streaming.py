"""Tri-streaming, measured from the client: an image and a spoken clip in, text and speech streamed out.

Starts a real ``nexus serve`` process on a multimodal model, sends it OpenAI chat requests with the
official ``openai`` client (a real handwritten digit as an ``image_url`` data URL, a real FSDD
recording of the held-out speaker as ``input_audio``, ``modalities: ["text", "audio"]``), and prints,
per request and as medians: seconds to the first text delta and to the first audio delta (as the
client sees them), completion tokens per second, seconds of speech and the real-time factor the server
reports (synthesis seconds per second of speech). Run on demand (not part of the test suite)::

    python benchmarks/tri_streaming.py --model models/capabilities/omni
    python benchmarks/tri_streaming.py --model models/capabilities/tri_streaming --rounds 5 --save reply.wav
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples" / "tri_streaming"
QUESTION = "Is the written digit the same as the spoken one? Answer yes or no, then name both."
READY = re.compile(r"Serving \S+ on (http://\S+/v1)")


def _media(image: Path, audio: Path) -> list[dict]:
    png = base64.b64encode(image.read_bytes()).decode("ascii")
    wav = base64.b64encode(audio.read_bytes()).decode("ascii")
    return [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
            {"type": "text", "text": QUESTION}]


def _start(model: str, threads: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen([sys.executable, "-m", "nexus.serving", "serve", model, "--port", "0"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    assert process.stdout is not None
    for line in process.stdout:
        found = READY.search(line)
        if found:
            return process, found.group(1)
        if time.time() > deadline:
            break
    process.kill()
    raise SystemExit(f"error: nexus serve {model} did not start (see its output above)")


def measure(client, content: list[dict], voice: str, max_tokens: int) -> dict:
    """One streamed request: client-side timings, the reply, its audio."""
    started = time.perf_counter()
    first_text = first_audio = None
    text, audio, metrics, usage = "", [], {}, None
    stream = client.chat.completions.create(
        model="served", messages=[{"role": "user", "content": content}], stream=True, max_tokens=max_tokens,
        modalities=["text", "audio"], audio={"voice": voice, "format": "wav"}, stream_options={"include_usage": True})
    for chunk in stream:
        extra = chunk.model_extra or {}
        metrics = extra.get("nexus_metrics") or metrics
        usage = chunk.usage or usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.content:
            first_text = first_text or time.perf_counter() - started
            text += delta.content
        spoken = getattr(delta, "audio", None)  # the client types it (an object) in recent versions
        spoken = spoken if isinstance(spoken, dict) or spoken is None else spoken.model_dump()
        if spoken:
            first_audio = first_audio or time.perf_counter() - started
            audio.append(base64.b64decode(spoken["data"]))
    total = time.perf_counter() - started
    tokens = usage.completion_tokens if usage else 0
    return {"text": text, "first_text_s": first_text or -1, "first_audio_s": first_audio or -1, "total_s": total,
            "tokens_per_s": tokens / total if total else 0.0, "audio_s": metrics.get("audio_s", 0.0),
            "rtf": metrics.get("rtf", 0.0), "audio": audio}


def _joined_wav(parts: list[bytes], path: Path) -> None:
    frames, params = [], None
    for part in parts:
        with wave.open(io.BytesIO(part), "rb") as w:
            params = params or w.getparams()
            frames.append(w.readframes(w.getnframes()))
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(b"".join(frames))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/capabilities/omni", help="a multimodal model folder")
    parser.add_argument("--image", type=Path, default=None, help="a PNG (default: a digit of the samples)")
    parser.add_argument("--audio", type=Path, default=None, help="a WAV (default: a held-out FSDD recording)")
    parser.add_argument("--voice", default="heart", help="the reply's voice (heart, joe)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--save", type=Path, default=None, help="write the last reply's speech to this WAV")
    args = parser.parse_args(argv)
    import openai

    image = args.image or sorted((SAMPLES / "digits").glob("*.png"))[0]
    audio = args.audio or sorted((SAMPLES / "fsdd").glob("*_theo_*.wav"))[0]
    if not Path(args.model, "config.json").is_file():
        raise SystemExit(f"error: --model {args.model}: no config.json (train omni first: make train CAPS=omni)")
    server, url = _start(args.model, args.threads)
    try:
        with openai.OpenAI(base_url=url, api_key="none", timeout=600, max_retries=0) as client:
            content = _media(image, audio)
            measure(client, content, args.voice, 2)  # warm-up: first-call costs (voice load, allocations)
            runs = [measure(client, content, args.voice, args.max_tokens) for _ in range(args.rounds)]
    finally:
        server.terminate()
        server.wait(30)
    print(f"model {args.model}; image {image.name}, audio {audio.name}; voice {args.voice}; "
          f"load {os.getloadavg()[0]:.2f}")
    for run in runs:
        print(f"  first text {run['first_text_s']:.2f} s, first audio {run['first_audio_s']:.2f} s, total "
              f"{run['total_s']:.2f} s, {run['tokens_per_s']:.1f} tok/s, speech {run['audio_s']:.2f} s (RTF "
              f"{run['rtf']:.3f}): {run['text']!r}")
    for key in ("first_text_s", "first_audio_s", "tokens_per_s", "rtf"):
        print(f"median {key}: {statistics.median(r[key] for r in runs):.3f}")
    if args.save and runs[-1]["audio"]:
        _joined_wav(runs[-1]["audio"], args.save)
        print(f"wrote {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
