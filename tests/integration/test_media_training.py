"""omni then vision_qa through the real trainer and evaluator, on tiny random parts.

A project folder with a tiny random Llama as ``models/base``, tiny random DINOv2 and Whisper folders
as the encoders, and the real omni and vision_qa samples (handwritten digits, spoken digits)
organized by the real organizer. ``nexus train`` builds the composite, trains its projectors for a
few steps and saves it; ``nexus eval`` scores the untrained composite against it, each modality
apart, on held-out digits and on every recording of the held-out speaker. vision_qa then starts from
omni's output (LoRA on the language model and the projector) and is saved as a plain transformers
LLaVA that loads without Nexus.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nexus.cli import main
from tests.project import ROOT, env
from tests.tiny import build_tiny_encoders

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")

TINY = {"image_size": 28, "audio_seconds": 1, "max_steps": 4, "batch_size": 4, "sample_size": 8,
        "eval_size": 2, "max_new_tokens": 3, "max_length": 256}

LOAD_PLAIN = """
import sys
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
model = AutoModelForImageTextToText.from_pretrained(sys.argv[1])
processor = AutoProcessor.from_pretrained(sys.argv[1])
prompt = processor.tokenizer.apply_chat_template(
    [{"role": "user", "content": "<image>What number is written in this image?"}], add_generation_prompt=True,
    tokenize=False)
inputs = processor(images=[Image.open(sys.argv[2]).convert("RGB")], text=prompt, return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
assert not any(n == "nexus" or n.startswith("nexus.") for n in sys.modules), "imported nexus"
print(type(model).__name__, out.shape[1] - inputs["input_ids"].shape[1])
"""


def _tri_subset(root: Path) -> Path:
    """A few of the real tri_streaming records of each kind (two of the held-out speaker's), with their
    media, in a folder named after the capability (the organizer routes it there alone)."""
    source = ROOT / "data" / "samples" / "tri_streaming"
    records = json.loads((source / "conversations.json").read_text())
    picked = [r for r in records if "audios" not in r][:4] + [r for r in records if r.get("speaker") == "theo"][:2] \
        + [r for r in records if r.get("speaker") == "george"][:4]
    out = root / "tri_streaming"
    for record in picked:
        for name in (*record.get("images", []), *record.get("audios", [])):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, out / name)
    (out / "conversations.json").write_text(json.dumps(picked))
    (out / "text_chats.json").write_text(json.dumps(json.loads((source / "text_chats.json").read_text())[:4]))
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A project folder: tiny base and encoders, params for omni and vision_qa, organized samples."""
    root = tmp_path_factory.mktemp("media") / "project"
    shutil.copytree(tiny_model_dir, root / "models" / "base")
    vision, audio = build_tiny_encoders(root / "models" / "encoders")
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["organize"]["sources"] = [str(ROOT / "data" / "samples" / name) for name in ("omni", "vision_qa",
                                                                                       "video_understanding")]
    data["organize"]["sources"].append(str(_tri_subset(root.parent / "tri")))
    parked = data.pop("parked")
    data["capabilities"] = {
        "omni": {**parked["omni"], **TINY, "vision_encoder": str(vision), "audio_encoder": str(audio)},
        "vision_qa": {**parked["vision_qa"], **TINY, "init_from": "models/capabilities/omni"},
        "video_understanding": {**parked["video_understanding"], **TINY, "video_frames": 3, "remote_code": True,
                                "init_from": "models/capabilities/omni"},
        "tri_streaming": {**parked["tri_streaming"], **TINY, "max_new_tokens": 6,
                          "init_from": "models/capabilities/omni"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cwd = Path.cwd()
    os.chdir(root)
    try:
        assert main(["organize", "--params", "params.yaml", "--out", "data/organized"]) == 0
        assert main(["detect", "models/base", "--out", "data/modality.json"]) == 0
    finally:
        os.chdir(cwd)
    return root


def _run(project: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("NEXUS_CHECKPOINT_DIR", str(project / "checkpoints"))
    assert main(list(argv)) == 0


def test_omni_trains_its_projectors_and_scores_each_modality(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(project, monkeypatch, "train", "--params", "params.yaml", "--capability", "omni",
         "--out", "models/capabilities/omni", "--data", "data/organized", "--modality", "data/modality.json")
    out = project / "models" / "capabilities" / "omni"
    card = json.loads((out / "run_card.json").read_text())
    assert card["steps"] == 4 and card["output"] == "nexus_omni" and card["library"] == "transformers.Trainer"
    assert json.loads((out / "config.json").read_text())["model_type"] == "nexus_omni"
    assert "load_omni" in (out / "README.md").read_text()

    from nexus.modality import detect_modalities

    report = detect_modalities(out)
    assert report["vision"] and report["audio_in"] and report["video"] and report["text"]

    from nexus.config import capability_params
    from nexus.media_training import eval_model
    from nexus.methods import load_params
    from nexus.multimodal.compose import load_omni

    trained, _ = load_omni(out)
    settings = capability_params(load_params(project / "params.yaml"), "omni")
    untrained, _ = eval_model("omni", project / "models" / "base", settings, seed=42)  # eval's baseline, seeded
    again, _ = eval_model("omni", project / "models" / "base", settings, seed=42)
    for w in ("model.multi_modal_projector.linear_1.weight", "model.audio_projector.linear_1.weight"):
        assert untrained.state_dict()[w].equal(again.state_dict()[w])  # the same baseline every time
        assert not trained.state_dict()[w].equal(untrained.state_dict()[w])  # both projectors learned
    lm = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert trained.state_dict()[lm].equal(untrained.state_dict()[lm])  # adapter none: the LM stayed frozen

    _run(project, monkeypatch, "eval", "--params", "params.yaml", "--capability", "omni",
         "--model", "models/capabilities/omni", "--data", "data/organized", "--out", "reports/eval/omni")
    metrics = json.loads((project / "reports" / "eval" / "omni" / "metrics.json").read_text())
    assert metrics["n"] == 52  # 2 held-out images + every recording of the held-out speaker (50)
    for model in ("base", "trained"):
        assert set(metrics[model]) == {"accuracy", "vision_accuracy", "audio_accuracy"}
    rows = [json.loads(line) for line in (project / "reports/eval/omni/predictions.jsonl").read_text().splitlines()]
    spoken = [r for r in rows if r.get("audios")]
    assert len(spoken) == 50 and all("_theo_" in r["audios"][0] for r in spoken)


def test_vision_qa_starts_from_omni_and_saves_a_plain_llava(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (project / "models" / "capabilities" / "omni" / "config.json").is_file():
        pytest.skip("needs omni's output (the test before)")
    _run(project, monkeypatch, "train", "--params", "params.yaml", "--capability", "vision_qa",
         "--out", "models/capabilities/vision_qa", "--data", "data/organized", "--modality", "data/modality.json")
    out = project / "models" / "capabilities" / "vision_qa"
    assert json.loads((out / "config.json").read_text())["model_type"] == "llava"
    assert not (out / "adapter_config.json").exists()  # LoRA merged: one plain model
    assert "AutoModelForImageTextToText" in (out / "README.md").read_text()
    digit = ROOT / "data" / "samples" / "vision_qa" / "digits" / sorted(
        os.listdir(ROOT / "data" / "samples" / "vision_qa" / "digits"))[0]
    plain = subprocess.run([sys.executable, "-I", "-c", LOAD_PLAIN, str(out), str(digit)], cwd=project.parent,
                           env={**env(), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert plain.stdout.split()[0] == "LlavaForConditionalGeneration"

    _run(project, monkeypatch, "eval", "--params", "params.yaml", "--capability", "vision_qa",
         "--model", "models/capabilities/vision_qa", "--data", "data/organized", "--out", "reports/eval/vision_qa")
    metrics = json.loads((project / "reports" / "eval" / "vision_qa" / "metrics.json").read_text())
    assert metrics["n"] == 2 and "accuracy" in metrics["base"] and "accuracy" in metrics["trained"]


def test_video_understanding_reads_clips_and_scores_digit_sequences(project: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if not (project / "models" / "capabilities" / "omni" / "config.json").is_file():
        pytest.skip("needs omni's output (the first test)")
    _run(project, monkeypatch, "train", "--params", "params.yaml", "--capability", "video_understanding",
         "--out", "models/capabilities/video_understanding", "--data", "data/organized",
         "--modality", "data/modality.json")
    out = project / "models" / "capabilities" / "video_understanding"
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "nexus_omni" and json.loads((out / "run_card.json").read_text())["steps"] == 4
    # remote_code: true: the modeling file and auto_map travel with it, and its card says how to load it
    assert (out / "omni_model.py").is_file() and config["auto_map"]["AutoModelForImageTextToText"]
    assert "trust_remote_code=True" in (out / "README.md").read_text()
    _run(project, monkeypatch, "eval", "--params", "params.yaml", "--capability", "video_understanding",
         "--model", "models/capabilities/video_understanding", "--data", "data/organized",
         "--out", "reports/eval/video_understanding")
    metrics = json.loads((project / "reports" / "eval" / "video_understanding" / "metrics.json").read_text())
    assert metrics["n"] == 2 and set(metrics["trained"]) == {"accuracy", "digit_accuracy"}


def test_tri_streaming_trains_from_omni_and_measures_text_and_speech(project: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if not (project / "models" / "capabilities" / "omni" / "config.json").is_file():
        pytest.skip("needs omni's output (the first test)")
    _run(project, monkeypatch, "train", "--params", "params.yaml", "--capability", "tri_streaming",
         "--out", "models/capabilities/tri_streaming", "--data", "data/organized", "--modality", "data/modality.json")
    _run(project, monkeypatch, "eval", "--params", "params.yaml", "--capability", "tri_streaming",
         "--model", "models/capabilities/tri_streaming", "--data", "data/organized",
         "--out", "reports/eval/tri_streaming")
    metrics = json.loads((project / "reports" / "eval" / "tri_streaming" / "metrics.json").read_text())
    assert metrics["n"] == 4  # the held-out speaker's two + eval_size 2 drawn from images and chats
    for model in ("base", "trained"):
        scores = metrics[model]
        assert {"accuracy", "streamed", "ttft_s", "tokens_per_s"} <= set(scores), scores
        assert scores["ttft_s"] > 0 and scores["tokens_per_s"] > 0
    rows = [json.loads(line) for line in
            (project / "reports/eval/tri_streaming/predictions.jsonl").read_text().splitlines()]
    assert sum(1 for r in rows if any("_theo_" in a for a in r.get("audios", []))) == 2
