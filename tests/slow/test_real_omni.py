"""omni on the real parts: SmolLM2-135M (the embedded GGUF), DINOv2-small and Whisper tiny.en from the
pinned wheels, a few projector steps on the real digit samples through the real trainer, then the
composite's modalities and an answer to a real photo and a real recording. Skipped when the wheels
are not installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from nexus.cli import main
from tests.project import ROOT
from tests.slow.test_real_encoders import _require_wheels

pytestmark = [pytest.mark.slow, pytest.mark.real_model, pytest.mark.omni,
              pytest.mark.usefixtures("keep_signal_handlers")]


def test_real_omni_trains_a_few_steps_and_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_wheels()
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(ROOT / "configs", root / "configs")
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["organize"]["sources"] = [str(ROOT / "data" / "samples" / "omni")]
    data["capabilities"] = {"omni": {**data.pop("parked")["omni"], "max_steps": 3, "batch_size": 4,
                                     "sample_size": 12, "eval_size": 2, "max_new_tokens": 4}}
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.chdir(root)
    monkeypatch.setenv("NEXUS_CHECKPOINT_DIR", str(root / "checkpoints"))
    assert main(["prepare-base", "--out", "models/base"]) == 0
    assert main(["encoders", "--params", "params.yaml"]) == 0
    assert json.loads(Path("models/encoders/uses/omni.json").read_text())["vision_encoder"]["stamp"]
    assert main(["organize", "--params", "params.yaml", "--out", "data/organized"]) == 0
    assert main(["detect", "models/base", "--out", "data/modality.json"]) == 0
    assert main(["train", "--params", "params.yaml", "--capability", "omni", "--out", "models/capabilities/omni",
                 "--data", "data/organized", "--modality", "data/modality.json"]) == 0
    card = json.loads(Path("models/capabilities/omni/run_card.json").read_text())
    assert card["steps"] == 3 and card["train_loss"] == card["train_loss"]  # finite

    from nexus.modality import detect_modalities
    from nexus.multimodal.compose import load_omni
    from nexus.multimodal.generate import generate_media

    report = detect_modalities("models/capabilities/omni")
    assert report["text"] and report["vision"] and report["audio_in"]
    model, processor = load_omni("models/capabilities/omni")
    photo = str(ROOT / "data/samples/llamafactory/data/mllm_demo_data/1.jpg")
    seven = str(ROOT / "data/samples/omni/fsdd/7_jackson_3.wav")
    answers = generate_media(model, processor, [
        {"prompt": [{"role": "user", "content": "<image>What is in this picture?"}], "images": [photo]},
        {"prompt": [{"role": "user", "content": "<audio>Which digit is spoken?"}], "audios": [seven]},
    ], max_new_tokens=8)
    assert len(answers) == 2 and all(isinstance(a, str) and a.strip() for a in answers)
