"""Helpers for tests that run the real pipeline in a throw-away copy of this project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def project_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files of this checkout (what a fresh clone holds)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()
    generated = ("reports/", "dvc.lock")  # this checkout's own run outputs (git-versioned, as DVC does)
    return sorted({f for f in out.split("\0") if f and (ROOT / f).is_file() and not f.startswith(generated)})


def copy_project(dest: Path) -> Path:
    """Copy the project into ``dest`` as a new git repo with one commit (DVC needs git)."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "fixture")
    return dest


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env=env).stdout


def edit_params(repo: Path, **dotted: object) -> None:
    """Set dotted keys (``capabilities.cot.max_steps=4`` as ``capabilities__cot__max_steps``)."""
    path = repo / "params.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in dotted.items():
        *parents, leaf = key.split("__")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def tiny_params(repo: Path, model: Path, steps: int = 4) -> None:
    """Point a project copy at a tiny model and shrink every capability's run to a few steps."""
    path = repo / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data["base"]["model"] = str(model)
    for entry in data["capabilities"].values():
        entry.update(init_from=str(model), max_steps=steps, sample_size=16, eval_size=2, max_new_tokens=8,
                     max_length=256)
    data["controller"]["checkpoint_every_steps"] = 2
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def env() -> dict[str, str]:
    """Environment for pipeline subprocesses: the test's virtualenv first on PATH."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(repo: Path, *cmd: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command in ``repo`` with :func:`env`, capturing text output."""
    result = subprocess.run(list(cmd), cwd=repo, env=env(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result
