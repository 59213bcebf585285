"""Values a user types never become shell code: Make variables, params.yaml's base.model and keys.

Every case runs the real target (or the real stage) with a value full of shell syntax (backticks,
``$(...)``, ``;``, ``|``, ``&&``, quotes, spaces) whose commands would create a file in a sentinel
folder, and asserts that the folder stays empty. The values are also invalid, so each run stops at
the first check that reads them; where a value is valid (a path with spaces) the test checks it
arrived intact.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.project import ROOT, VENV_BIN, copy_project, env, run, tiny_params

VENV = VENV_BIN.parent


def hostile(sentinel: Path) -> str:
    """A value whose every shell reading would create a file in ``sentinel``."""
    s = sentinel.as_posix()
    return f"x`touch {s}/bt`$(touch {s}/dollar);touch {s}/semi|touch {s}/pipe&&touch {s}/and 'q\" z"


# (target, variable, extra variables): each target is run with the variable set to the hostile value.
CASES = [
    ("check-caps", "CAPS", {}),
    ("train", "CAPS", {}),
    ("train", "METHOD", {}),
    ("train", "SAMPLE_SIZE", {}),
    ("train", "EPOCHS", {}),
    ("train", "BATCH_SIZE", {}),
    ("train", "QUICK", {}),
    ("train", "DRY_RUN", {"CAPS": "nonexistent"}),
    ("plan", "CAPS", {}),
    ("compare", "CAP", {"METHODS": "sft"}),
    ("compare", "METHODS", {"CAP": "cot"}),
    ("benchmark", "MODEL", {}),
    ("benchmark", "TASKS", {"MODEL": "no-such-model"}),
    ("benchmark", "LIMIT", {"MODEL": "no-such-model"}),
    ("benchmark", "BACKEND", {"MODEL": "no-such-model"}),
    ("test", "PYTEST_ARGS", {}),
    ("repro", "VENV", {"SKIP_INSTALL": "1"}),
    ("check-caps", "PYTHON3", {}),
    ("docker-build", "IMAGE", {}),
    ("docker-build", "DOCKER_BASE", {}),
    ("docker-build", "DOCKER_BUILD_ARGS", {}),
    ("docker-build", "DOCKER_TORCH_INDEX", {}),
    ("docker-train", "DOCKER_NAME", {}),
    ("docker-train", "DOCKER_RUN_ARGS", {}),
    ("docker-train", "DOCKER_DIRS", {}),
    ("docker-train", "DOCKER_TRAIN_VARS", {}),
    ("docker-test", "PYTEST_ARGS", {}),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy, with a ``docker`` on PATH that records its arguments (Docker is not under test)."""
    repo = copy_project(tmp_path_factory.mktemp("hostile") / "repo")
    bin_dir = repo.parent / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      "open(os.environ['DOCKER_ARGV_LOG'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    return repo


def make(repo: Path, target: str, variables: dict[str, str], log: Path) -> subprocess.CompletedProcess:
    """``make <target>`` with ``variables`` on its command line, the project's virtualenv, no install."""
    environment = {**env(), "PATH": f"{repo.parent / 'bin'}{os.pathsep}{env()['PATH']}",
                   "DOCKER_ARGV_LOG": str(log)}
    args = ["make", "--no-print-directory", target, f"VENV={VENV}", "SKIP_INSTALL=1",
            *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(args, cwd=repo, env=environment, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("target", "variable", "extra"), CASES, ids=[f"{t}-{v}" for t, v, _ in CASES])
def test_make_variable_is_never_evaluated(project: Path, tmp_path: Path, target: str, variable: str,
                                          extra: dict[str, str]) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    log = tmp_path / "docker-argv.jsonl"
    params_before = (project / "params.yaml").read_bytes()
    value = hostile(sentinel)
    result = make(project, target, {**extra, variable: value}, log)
    assert not list(sentinel.iterdir()), (f"make {target} {variable}=... ran a command from the value:\n"
                                          f"{result.stdout}\n{result.stderr}")
    assert (project / "params.yaml").read_bytes() == params_before, "a hostile value reached params.yaml"
    if log.is_file():  # it reached docker: as whole arguments, never split into commands
        argv = [json.loads(line) for line in log.read_text().splitlines()]
        words = [w for call in argv for w in call]
        if variable in ("DOCKER_NAME", "IMAGE", "DOCKER_BASE"):  # one whole argument (less Make's own $(...))
            assert any("x`touch" in w and w.endswith("'q\" z") for w in words), argv


def test_a_path_with_spaces_reaches_the_command_intact(project: Path, tmp_path: Path) -> None:
    result = make(project, "benchmark", {"MODEL": "models/my model", "LIMIT": "x y"}, tmp_path / "log")
    assert result.returncode != 0
    assert "'x y'" in result.stderr, result.stderr  # argparse: invalid int value: 'x y' (one argument)


def test_train_variables_reach_the_container_by_name(project: Path, tmp_path: Path) -> None:
    log = tmp_path / "docker-argv.jsonl"
    result = make(project, "docker-train", {"CAPS": "cot", "METHOD": "dpo; rm -rf x", "DOCKER_DIRS": "logs"}, log)
    assert result.returncode == 0, result.stderr
    (argv,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert argv[-3:] == ["nexus:cuda", "make", "train"]
    assert argv[argv.index("CAPS") - 1:argv.index("CAPS") + 1] == ["-e", "CAPS"]
    assert "METHOD" in argv and not any("rm -rf" in w for w in argv)
    assert f"{project}/logs:/workspace/logs" in argv


def test_dag_commands_interpolate_nothing() -> None:
    """DVC runs each ``cmd`` through a shell: a ``${...}`` there would paste params.yaml into it."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        cmd = stage.get("do", stage)["cmd"]
        assert "${" not in cmd, f"dvc.yaml stage {name}: cmd interpolates a value: {cmd}"


def test_a_hostile_stage_key_is_refused_before_anything_runs(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    result = subprocess.run([str(VENV_BIN / "nexus"), "prepare"], cwd=ROOT, capture_output=True, text=True,
                            env={**env(), "DVC_STAGE": f"prepare@{hostile(sentinel)}"}, timeout=60)
    assert result.returncode == 1 and "unknown capability" in result.stderr
    assert not list(sentinel.iterdir())


def test_dvc_detect_with_a_hostile_base_model_path(project: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """base.model is a folder whose name is shell syntax: the detect stage reads it, runs nothing."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    name = f"models/tiny;touch {sentinel}/semi`touch {sentinel}/bt` $(touch {sentinel}/dollar)"
    model = project / name
    model.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "config.json", model / "config.json")
    tiny_params(project, Path(name))
    run(project, "dvc", "repro", "--single-item", "detect")
    assert not list(sentinel.iterdir())
    report = json.loads((project / "data" / "modality.json").read_text())
    assert report["path"] == name and report["text"]
