"""Pieces of the shared trainer that need no training run: modality gate, paths, results CSV."""

import json

import pytest

from nexus import paths, results
from nexus.trainer import CapabilityUnavailableError, check_modalities


def test_missing_modality_stops_with_what_to_run(tmp_path):
    report = tmp_path / "modality.json"
    report.write_text(json.dumps({"text": True, "vision": False, "audio_in": False, "audio_out": False,
                                  "video": False, "path": "models/base"}))
    check_modalities("cot", report)
    check_modalities("omni", report)  # omni converts a text model: text is all it needs
    with pytest.raises(CapabilityUnavailableError, match="no vision.*make train CAPS=omni,vision-qa"):
        check_modalities("vision_qa", report)
    with pytest.raises(CapabilityUnavailableError, match="no vision, video.*CAPS=omni,video-understanding"):
        check_modalities("video_understanding", report)


def test_output_and_checkpoint_dirs_honour_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("NEXUS_OUTPUT_DIR", raising=False)
    monkeypatch.delenv("NEXUS_CHECKPOINT_DIR", raising=False)
    assert str(paths.output_dir("cot")) == "models/capabilities/cot"
    assert str(paths.checkpoint_dir("cot")) == "checkpoints/cot"
    monkeypatch.setenv("NEXUS_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("NEXUS_CHECKPOINT_DIR", str(tmp_path / "ck"))
    assert paths.output_dir("cot") == tmp_path / "out" / "cot"
    assert paths.checkpoint_dir("cot") == tmp_path / "ck" / "cot"
    assert str(paths.output_dir("cot", "models/x")) == "models/x"


def test_results_csv_appends_rows_and_widens_columns(tmp_path):
    results.append_row("training", {"capability": "cot", "steps": 2}, tmp_path)
    results.append_row("training", {"capability": "cot", "steps": 3}, tmp_path)
    results.append_row("training", {"capability": "cot", "steps": 4, "tokens_per_s": 9.5}, tmp_path)
    lines = (tmp_path / "training.csv").read_text().splitlines()
    assert lines == ["capability,steps,tokens_per_s", "cot,2,", "cot,3,", "cot,4,9.5"]
