"""image_generation through the real organizer, trainer, evaluator and ``nexus generate-image``.

A project folder holds the real DreamBooth dog photos with their project-written records (as
``data/samples/image_generation`` has them), params.yaml's image_generation entry un-parked and
shrunk, a tiny random Llama as the language model and a tiny random DINOv2 as the score's encoder.
The diffusion parts are the tiny random SD3 ones a fresh clone uses (no diffusion weights exist
offline): the images are noise, so what is checked is the run (only the projector trains, the
output folder reloads, samples and scores are written, bad input is refused), not picture quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from nexus.cli import main
from tests.project import ROOT
from tests.tiny import build_tiny_encoders

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")
SAMPLES = ROOT / "data" / "samples" / "image_generation"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("image_generation")
    shutil.copytree(SAMPLES, root / "data" / "image_generation")
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["base"]["model"] = str(tiny_model_dir)
    data["organize"]["sources"] = [str(root / "data")]
    entry = data["parked"].pop("image_generation")
    vision, _ = build_tiny_encoders(root / "encoders")
    entry.update(init_from=str(tiny_model_dir), max_steps=4, batch_size=2, diffusion_steps=2,
                 vision_encoder=str(vision))
    data["capabilities"] = {"image_generation": entry}
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def test_projector_trains_and_eval_writes_samples_and_dino_scores(project: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    assert main(["organize", "--params", "params.yaml", "--out", "organized"]) == 0
    catalog = json.loads((project / "organized" / "catalog.json").read_text())
    routed = [f for f in catalog["files"] if f["path"].endswith("captions.jsonl")]
    assert routed and routed[0]["capabilities"] == ["image_generation"] and routed[0]["records"] == 30
    assert main(["detect", "--params", "params.yaml", "--out", "modality.json"]) == 0
    assert main(["train", "--params", "params.yaml", "--capability", "image_generation", "--out", "out/ig",
                 "--data", "organized", "--modality", "modality.json"]) == 0
    out = project / "out" / "ig"
    card = json.loads((out / "run_card.json").read_text())
    assert card["output"] == "nexus_sd3_projector" and card["is_adapter"] is False
    assert card["train_examples"] == 5 and card["eval_examples"] == 25 and card["steps"] == 4  # split: train/test
    generator = json.loads((out / "nexus_generator.json").read_text())
    assert generator["random_parts"] is True and generator["diffusion_model"] == "diffusion"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "diffusion", "nexus_generator.json", "projector",
                                                     "run_card.json"]  # the frozen LM is referenced, not copied
    assert "nexus generate-image" in (out / "README.md").read_text()

    assert main(["eval", "--params", "params.yaml", "--capability", "image_generation", "--model", "out/ig",
                 "--data", "organized"]) == 0
    report = project / "reports" / "eval" / "image_generation"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n"] == 25
    for which in ("base", "trained"):
        scores = metrics[which]
        assert set(scores) == {"dino", "diversity", "random_parts"} and scores["random_parts"] == 1.0
        assert -1.0 <= scores["dino"] <= 1.0 and 0.0 <= scores["diversity"] <= 2.0
        assert len(list((report / "samples" / which).glob("*.png"))) == 25
    # same prompt, same seed: the trained projector's conditioning draws another image than the new one's
    samples = report / "samples"
    assert (samples / "base" / "000.png").read_bytes() != (samples / "trained" / "000.png").read_bytes()
    rows = [json.loads(line) for line in (report / "predictions.jsonl").read_text().splitlines()]
    assert rows[0]["base"] == "base/000.png" and rows[0]["trained"] == "trained/000.png"
    assert rows[0]["prompt"].startswith("a sks dog ") and rows[0]["images"][0].endswith(".jpg")


def test_generate_image_writes_one_png_and_refuses_bad_input(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    monkeypatch.chdir(project)
    if not (project / "out" / "ig" / "nexus_generator.json").is_file():
        pytest.skip("needs the trained generator of the test above")
    assert main(["generate-image", "a sks dog in the snow", "--out", "dog.png", "--model", "out/ig",
                 "--params", "params.yaml", "--steps", "2"]) == 0
    assert "noise" in capsys.readouterr().out
    with Image.open(project / "dog.png") as image:
        assert image.size == (32, 32)
    for args, words in ((["", "--out", "x.png"], "prompt: empty"), (["a dog", "--out", "x.jpg"], "give a .png"),
                        (["a dog", "--out", "x.png", "--model", "organized"], "no nexus_generator.json")):
        assert main(["generate-image", *args, "--params", "params.yaml"]) == 1
        assert words in capsys.readouterr().err
        assert not (project / "x.png").exists() and not list(project.glob(".x.png.*"))
