"""Helpers for tests that run the real pipeline in a throw-away copy of this project."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
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


BASE_CACHE = Path(tempfile.gettempdir()) / f"nexus-tests-base-{os.getuid()}"


def converted_base() -> Path | None:
    """``models/base`` as the base_model stage writes it (the embedded SmolLM2, stamped), converted
    once per machine into :data:`BASE_CACHE` and reused; None without the embedded wheel."""
    from nexus.loading import ModelSourceError, convert_to_hf, embedded_gguf_path, is_converted

    try:
        source = embedded_gguf_path()
    except ModelSourceError:
        return None
    if not is_converted(source, BASE_CACHE):
        convert_to_hf(source, BASE_CACHE)
    return BASE_CACHE


def copy_project(dest: Path, seed_base: bool = True) -> Path:
    """Copy the project into ``dest`` as a new git repo with one commit (DVC needs git).

    ``seed_base``: ``models/base`` is linked from :func:`converted_base`, so the real base_model
    stage finds its stamp and keeps the folder (a second) instead of converting it again (a minute
    per test); the conversion itself is the stage's own code, run once.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)
    base = converted_base() if seed_base else None
    if base is not None:
        shutil.copytree(base, dest / "models" / "base", copy_function=_link_or_copy)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "fixture")
    return dest


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)


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


class Background:
    """A command in the background in ``repo``, its output lines (stdout and stderr) collected as they come."""

    def __init__(self, repo: Path, cmd: list[str], triggers: tuple[tuple[str, int], ...] = ()):
        """``triggers``: (pattern, signal) pairs; the first line matching a pattern gets that signal
        sent at once, from the reader thread (no polling delay: the final save lasts ~0.1 s)."""
        self.proc = subprocess.Popen(
            cmd, cwd=repo, env={**env(), "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.lines: list[str] = []
        self.triggers = list(triggers)
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            for trigger in [t for t in self.triggers if re.search(t[0], line)]:
                self.triggers.remove(trigger)
                os.kill(self.proc.pid, trigger[1])
            self._queue.put(line)

    def _drain(self):
        while not self._queue.empty():
            self.lines.append(self._queue.get())

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            for line in self.lines:
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None and self._queue.empty():
                break
            time.sleep(0.05)
        self._drain()
        raise AssertionError(f"no line matching {pattern!r}:\n{''.join(self.lines[-40:])}")

    def count(self, pattern: re.Pattern[str]) -> int:
        """Lines so far that match ``pattern``."""
        self._drain()
        return sum(1 for line in self.lines if pattern.search(line))
