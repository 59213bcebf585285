"""podcast through the real organizer, trainer and evaluator, on a tiny random Llama and Whisper.

A project folder holds a few of the real sample documents with their project-written scripts (in a
folder named after the capability, as the organizer routes them), params.yaml's podcast entry
un-parked and shrunk, and a tiny random Whisper as the round trip's reader. ``nexus train`` trains
the LoRA for two steps; ``nexus eval`` scores the base and the trained model: format compliance,
key-term coverage and the round trip's word error rate, each written to metrics.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nexus.cli import main
from tests.project import ROOT
from tests.tiny import build_tiny_whisper

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("podcast")
    lines = (ROOT / "data" / "samples" / "podcast" / "scripts.jsonl").read_text(encoding="utf-8").splitlines()
    (root / "data" / "podcast").mkdir(parents=True)
    (root / "data" / "podcast" / "scripts.jsonl").write_text("\n".join(lines[:12]) + "\n", encoding="utf-8")
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["base"]["model"] = str(tiny_model_dir)
    data["organize"]["sources"] = [str(root / "data")]
    entry = data["parked"].pop("podcast")
    entry.update(init_from=str(tiny_model_dir), max_steps=2, batch_size=1, eval_size=2, max_new_tokens=8,
                 max_length=512, round_trip=1, audio_encoder=str(build_tiny_whisper(root / "whisper")))
    data["capabilities"] = {"podcast": entry}
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def test_podcast_trains_and_reports_format_coverage_and_round_trip(project: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    assert main(["organize", "--params", "params.yaml", "--out", "organized"]) == 0
    catalog = json.loads((project / "organized" / "catalog.json").read_text())
    routed = [f for f in catalog["files"] if f["path"].endswith("scripts.jsonl")]
    assert routed and routed[0]["capabilities"] == ["podcast"]
    assert main(["detect", "--params", "params.yaml", "--out", "modality.json"]) == 0
    assert main(["train", "--params", "params.yaml", "--capability", "podcast", "--out", "out/podcast",
                 "--data", "organized", "--modality", "modality.json"]) == 0
    card = json.loads((project / "out" / "podcast" / "run_card.json").read_text())
    assert card["capability"] == "podcast" and 8 <= card["train_examples"] <= 10  # 2 held out, long ones dropped
    assert main(["eval", "--params", "params.yaml", "--capability", "podcast", "--model", "out/podcast",
                 "--data", "organized"]) == 0
    metrics = json.loads((project / "reports" / "eval" / "podcast" / "metrics.json").read_text())
    assert metrics["n"] == 2
    for which in ("base", "trained"):
        scores = metrics[which]
        assert {"format_ok", "parses", "alternates", "turns", "coverage", "rendered"} <= set(scores)
        assert scores["format_ok"] == 0.0  # 8 new tokens of a random model are no script
        assert scores["rendered"] == 0.0 and "wer" not in scores  # so there was nothing to voice
    predictions = [json.loads(line) for line in
                   (project / "reports" / "eval" / "podcast" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 2 and all("Document:\n" in p["prompt"] for p in predictions)
