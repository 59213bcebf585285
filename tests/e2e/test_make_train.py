"""`make train` as a user runs it, in a fresh copy of the project (tiny model, real libraries)."""

import subprocess
import sys
from pathlib import Path

import yaml

from tests.project import ROOT, copy_project, env, git, run, tiny_params

MAKE_ENV = [f"VENV={sys.prefix}", "SKIP_INSTALL=1"]


def test_make_train_cot_runs_the_pipeline_and_reports_both_scores(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir, steps=2)
    git(repo, "commit", "-qam", "tiny model")

    result = run(repo, "make", "train", "CAPS=cot", "BATCH_SIZE=1", "EPOCHS=1", *MAKE_ENV)
    assert "capabilities.cot.batch_size: 2 -> 1" in result.stdout
    assert "Running stage 'train@cot'" in result.stdout and "Running stage 'eval@cot'" in result.stdout
    assert "cot accuracy: base " in result.stdout and " -> trained " in result.stdout
    assert yaml.safe_load((repo / "params.yaml").read_text())["capabilities"]["cot"]["batch_size"] == 1
    assert "capabilities.cot.batch_size" in run(repo, "dvc", "params", "diff").stdout
    assert (repo / "logs" / "train_cot.log").is_file()

    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert list(params["capabilities"]) == ["cot"]  # the selection is the DAG; the rest is parked
    assert list(params["parked"]) == ["omni", "vision_qa", "video_understanding", "podcast", "tri_streaming",
                                      "image_generation", "video_generation", "remotion_explainer",
                                      "reasoning", "thinking", "tools", "streaming"]
    assert "Running stage 'merge'" in result.stdout and "Running stage 'report'" in result.stdout

    # The README's `dvc repro`, from a new shell without the virtualenv: `python3` is the system's
    # (the stages re-execute on the project's interpreter), and nothing is trained again.
    shell = {**env(), "PATH": "/usr/bin:/bin", "NEXUS_PYTHON": sys.executable}
    again = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=repo, env=shell,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    # organize rescans the data folders on every run (dvc.yaml: always_changed) and finds nothing new
    assert [line for line in again.stdout.splitlines() if line.startswith("Running stage")] == [
        "Running stage 'organize':"], again.stdout
    assert "data/organized: unchanged since the last run" in again.stdout

    again = run(repo, "make", "train", "CAPS=cot", *MAKE_ENV)
    assert [line for line in again.stdout.splitlines() if line.startswith("Running stage")] == [
        "Running stage 'organize':"]
    assert "cot accuracy: base " in again.stdout


def test_make_train_unknown_capability_fails_before_installing_anything(tmp_path):
    result = run(ROOT, "make", "--no-print-directory", "train", "CAPS=nosuch", f"VENV={tmp_path / 'venv'}",
                 check=False)
    assert result.returncode != 0
    assert "unknown capability 'nosuch'" in result.stderr
    assert "cot, reasoning, thinking, tools" in result.stderr and "all-text" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir)
    result = run(repo, "make", "train", "CAPS=all-text", "DRY_RUN=1", *MAKE_ENV)
    assert "Nexus plan" in result.stdout and "1. cot" in result.stdout
    assert "train@cot" in result.stdout
    assert not (repo / "models" / "capabilities" / "cot").exists()
