"""Stage scripts run on the project's interpreter even when `python` is the system's (issue 10)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable  # the interpreter under the venv


def bare_env(**extra: str) -> dict[str, str]:
    """An environment as a shell without the virtualenv activated has it."""
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")}
    return {**keep, "PATH": "/usr/bin:/bin", **extra}


@pytest.fixture(scope="module")
def system_python() -> str:
    probe = subprocess.run([BASE_PYTHON, "-c", "import nexus"], capture_output=True, cwd="/", env=bare_env())
    if probe.returncode == 0 or sys.prefix == sys.base_prefix:
        pytest.skip("the base interpreter imports nexus: nothing to switch from")
    return BASE_PYTHON


def test_a_stage_started_by_the_system_python_runs_on_the_project_one(system_python: str) -> None:
    result = subprocess.run([system_python, "stages/detect.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            env=bare_env(NEXUS_PYTHON=sys.executable), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: nexus detect")


def test_without_a_project_interpreter_it_says_what_to_run(system_python: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "stages", tmp_path / "stages")  # a checkout without .venv
    result = subprocess.run([system_python, "stages/detect.py", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, env=bare_env(), timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "make install" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
