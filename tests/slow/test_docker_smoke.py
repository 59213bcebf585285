"""The image built and run for real: ``docker/smoke.sh`` (``make docker-smoke``) on CPU, no registry.

The script installs Docker where it is missing, makes a local Debian base image with debootstrap,
builds docker/Dockerfile on it with the CPU torch, pauses ``make train CAPS=cot QUICK=1`` in a
container at its first step and stops it with ``docker stop -t 120``, then checks that a second
container resumes from the checkpoint and finishes (docker/README.md, "Smoke run"). This test runs it
with its folders under ``tmp_path`` and checks what it leaves: ``smoke.json``, the two containers'
logs, the checkpoint's schedule marker and the trained model.

Slow (about 20 minutes cold, 10 with the image built): deselected unless ``-F``. Skipped unless
root, with apt-get (or Docker already there), and with the network to a Debian mirror and to PyPI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "smoke.sh"
CAPABILITY = "cot"
TIMEOUT_SECONDS = 2 * 3600
PROBES = {
    "a Debian mirror": "http://deb.debian.org/debian/dists/bookworm/Release",
    "PyPI": "https://pypi.org/simple/pip/",
}


def _unreachable() -> list[str]:
    """The PROBES this machine cannot fetch (a few seconds each at most)."""
    missing = []
    for what, url in PROBES.items():
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15):
                pass
        except (urllib.error.URLError, OSError):
            missing.append(f"{what} ({url})")
    return missing


def _skip_reason() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "docker/smoke.sh needs root (it installs packages with apt-get and may start dockerd)"
    if shutil.which("apt-get") is None and (shutil.which("docker") is None or shutil.which("dockerd") is None):
        return "no apt-get to install docker.io and debootstrap with (and no Docker installed)"
    missing = _unreachable()
    if missing:
        return "no network to " + " and ".join(missing) + ": the base image and the build download from them"
    return None


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, subprocess.CompletedProcess[str]]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("docker-smoke")
    env = {**os.environ, "SMOKE_DIR": str(folder), "SMOKE_CAPS": CAPABILITY}
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"docker/smoke.sh exited {result.returncode}:\n{result.stderr[-6000:]}"
    return folder, json.loads((folder / "smoke.json").read_text()), result


def test_the_image_is_built_and_its_size_printed(smoke) -> None:
    folder, figures, result = smoke
    assert figures["image_bytes"] > 500_000_000  # torch alone is more than that
    assert figures["build_seconds"] >= 0
    assert re.search(r"image \S+: [0-9.]+ GB \([0-9]+ bytes\), built in [0-9]+ s", result.stderr), result.stderr[-3000:]
    assert (folder / "build.log").is_file()


def test_docker_stop_during_training_leaves_a_checkpoint(smoke) -> None:
    folder, figures, _ = smoke
    assert re.fullmatch(rf"checkpoints/{CAPABILITY}/checkpoint-[0-9]+", figures["checkpoint"]), figures
    assert figures["stop_step"] >= 1
    assert figures["rc_stop"] != 0  # the stage exits 143, so make train fails
    run1 = (folder / "run1.log").read_text()
    assert f"Paused at step {figures['stop_step']}" in run1
    assert "nexus-entrypoint: SIGTERM" in run1
    assert "Stop requested by SIGTERM" in run1
    # The checkpoint itself is removed once run 2 finishes; the script keeps its schedule marker.
    marker = json.loads((folder / "checkpoint-schedule.json").read_text())
    assert marker, "an empty nexus_schedule.json"


def test_the_next_container_resumes_and_finishes(smoke) -> None:
    folder, figures, _ = smoke
    checkpoint = figures["checkpoint"].rsplit("/", 1)[1]
    assert figures["rc_resume"] == 0
    assert figures["resumed"].endswith(checkpoint), figures
    assert re.search(rf"resuming from \S*/{checkpoint}\b", (folder / "run2.log").read_text())
    model = folder / "models" / "capabilities" / CAPABILITY
    assert model.is_dir() and any(model.iterdir()), f"no trained model in {model}"
    assert figures["total_seconds"] >= figures["run1_seconds"] + figures["run2_seconds"]
