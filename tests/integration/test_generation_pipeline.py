"""image_generation and video_generation through the real organizer, trainer, evaluator and
``nexus generate-image`` / ``generate-video``.

A project folder holds the capability's real samples (the DreamBooth dog photos; clips of real
handwritten digits) with their project-written records, params.yaml's entry un-parked and shrunk, a
tiny random Llama as the language model and a tiny random DINOv2 as the score's encoder. The
diffusion parts are the tiny random SD3 / Wan ones a fresh clone uses (no diffusion weights exist
offline): the samples are noise, so what is checked is the run (only the projector trains, the
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
CASES = {  # capability: (train, held out, sample suffix, output, family)
    "image_generation": (5, 25, ".png", "nexus_sd3_projector", "sd3"),
    "video_generation": (32, 8, ".gif", "nexus_wan_projector", "wan"),
}


@pytest.fixture(scope="module", params=list(CASES))
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    capability = request.param
    root = tmp_path_factory.mktemp(capability)
    shutil.copytree(ROOT / "data" / "samples" / capability, root / "data" / capability)
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["base"]["model"] = str(tiny_model_dir)
    data["organize"]["sources"] = [str(root / "data")]
    entry = data["parked"].pop(capability)
    vision, _ = build_tiny_encoders(root / "encoders")
    entry.update(init_from=str(tiny_model_dir), max_steps=4, batch_size=2, diffusion_steps=2,
                 vision_encoder=str(vision))
    data["capabilities"] = {capability: entry}
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def test_projector_trains_and_eval_writes_samples_and_dino_scores(project: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    capability = next(iter(yaml.safe_load((project / "params.yaml").read_text())["capabilities"]))
    train, held, suffix, output, family = CASES[capability]
    assert main(["organize", "--params", "params.yaml", "--out", "organized"]) == 0
    catalog = json.loads((project / "organized" / "catalog.json").read_text())
    routed = [f for f in catalog["files"] if f["path"].endswith("captions.jsonl")]
    assert routed and routed[0]["capabilities"] == [capability] and routed[0]["records"] == train + held
    assert main(["detect", "--params", "params.yaml", "--out", "modality.json"]) == 0
    assert main(["train", "--params", "params.yaml", "--capability", capability, "--out", "out/gen",
                 "--data", "organized", "--modality", "modality.json"]) == 0
    out = project / "out" / "gen"
    card = json.loads((out / "run_card.json").read_text())
    assert card["output"] == output and card["is_adapter"] is False
    assert card["train_examples"] == train and card["eval_examples"] == held and card["steps"] == 4  # split key
    generator = json.loads((out / "nexus_generator.json").read_text())
    assert generator["random_parts"] is True and generator["diffusion_model"] == "diffusion"
    assert generator["family"] == family and generator["frames"] == (9 if family == "wan" else 1)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "diffusion", "nexus_generator.json", "projector",
                                                     "run_card.json"]  # the frozen LM is referenced, not copied
    assert f"nexus generate-{capability.split('_')[0]}" in (out / "README.md").read_text()

    assert main(["eval", "--params", "params.yaml", "--capability", capability, "--model", "out/gen",
                 "--data", "organized"]) == 0
    report = project / "reports" / "eval" / capability
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n"] == held
    for which in ("base", "trained"):
        scores = metrics[which]
        assert set(scores) == {"dino", "diversity", "random_parts"} and scores["random_parts"] == 1.0
        assert -1.0 <= scores["dino"] <= 1.0 and 0.0 <= scores["diversity"] <= 2.0
        assert len(list((report / "samples" / which).glob(f"*{suffix}"))) == held
    # same prompt, same seed: the trained projector's conditioning draws another sample than the new one's
    samples = report / "samples"
    first = f"000{suffix}"
    assert (samples / "base" / first).read_bytes() != (samples / "trained" / first).read_bytes()
    rows = [json.loads(line) for line in (report / "predictions.jsonl").read_text().splitlines()]
    assert rows[0]["base"] == f"base/{first}" and rows[0]["trained"] == f"trained/{first}"
    # the scorecard's contact sheet picks them up (a clip by its first frame)
    from nexus.report import plot_samples, sample_files

    found = sample_files(project / "reports" / "eval", [capability])
    assert [p.name for p in found[capability]["trained"]] == [f"00{n}{suffix}" for n in range(3)]
    plot_samples(found, project / "samples.png")
    assert (project / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_generate_writes_the_sample_and_refuses_bad_input(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from nexus.multimodal.media import load_video

    monkeypatch.chdir(project)
    if not (project / "out" / "gen" / "nexus_generator.json").is_file():
        pytest.skip("needs the trained generator of the test above")
    video = json.loads((project / "out" / "gen" / "nexus_generator.json").read_text())["family"] == "wan"
    verb, name, other = ("generate-video", "clip.mp4", "generate-image") if video else \
        ("generate-image", "dog.png", "generate-video")
    assert main([verb, "a sks dog in the snow", "--out", name, "--model", "out/gen", "--params", "params.yaml",
                 "--steps", "2"]) == 0
    assert "noise" in capsys.readouterr().out
    if video:
        assert len(load_video(str(project / name), 9)) == 9 and Image.open(project / "clip.gif").n_frames == 9
        assert len(list((project / "clip_frames").glob("*.png"))) == 9
    else:
        with Image.open(project / name) as image:
            assert image.size == (32, 32)
    suffix = Path(name).suffix
    for args, words in ((["", "--out", f"x{suffix}"], "prompt: empty"),
                        (["a dog", "--out", "x.txt"], f"give a {suffix}"),
                        (["a dog", "--out", f"x{suffix}", "--model", "organized"], "no nexus_generator.json")):
        assert main([verb, *args, "--params", "params.yaml"]) == 1
        assert words in capsys.readouterr().err
        assert not list(project.glob("x*")) and not list(project.glob(".x*"))
    wrong = "x.mp4" if not video else "x.png"
    assert main([other, "a dog", "--out", wrong, "--model", "out/gen", "--params", "params.yaml"]) == 1
    assert f"use nexus {verb}" in capsys.readouterr().err
