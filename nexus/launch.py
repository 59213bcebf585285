"""The launcher side of a multi-process train stage: ``launch:`` in params.yaml becomes an
``accelerate launch`` of the same stage script (torchrun underneath: DDP, FSDP or DeepSpeed as
``configs/accelerate/<strategy>.yaml`` says), and this process stays as the stage's parent.

The parent is what DVC, ``make`` and the container's entrypoint see, so it keeps the controller's
signals working through the launcher: ``kill -USR1/-USR2/-TERM <parent>`` is handed to every rank
(the processes below it that catch SIGUSR1: the stage scripts, once their handlers are in), and the
ranks agree on it at the next step (:mod:`nexus.controller`). The launcher itself ignores SIGUSR1
and SIGUSR2 (set before it starts, inherited until each rank installs its own), because torchrun
would die of them. A SIGTERM before any rank is up goes to the launcher, which stops the ranks.

Exit status: the launcher's, except 143 when the run stopped on SIGTERM (rank 0 leaves a note at
``$NEXUS_STOP_NOTE``, so a SIGTERM sent to one rank directly counts too): a rerun resumes.

Pure standard library: planning and ``--help`` stay torch-free.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from nexus.config import LaunchParams

__all__ = [
    "CONFIG_DIR",
    "GPU_STRATEGIES",
    "STOP_NOTE_ENV",
    "LaunchError",
    "accelerate_command",
    "check_launch",
    "config_file",
    "leave_stop_note",
    "needs_launch",
    "rank_pids",
    "relaunch",
    "run_ranks",
    "visible_gpus",
]

CONFIG_DIR = Path("configs/accelerate")
GPU_STRATEGIES = ("fsdp", "zero2", "zero3")
"""Strategies that shard the model across GPUs; accelerate runs them as plain DDP on a CPU."""
STOP_NOTE_ENV = "NEXUS_STOP_NOTE"
EXIT_SIGTERM = 143
RELAYED = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


class LaunchError(ValueError):
    """The ``launch:`` settings cannot run on this machine."""


def needs_launch(launch: LaunchParams) -> bool:
    """Whether this process should start the ranks: more than one process asked for, and no
    launcher above us already (a rank has ``LOCAL_RANK``)."""
    return launch.world_size > 1 and "LOCAL_RANK" not in os.environ


def visible_gpus() -> int:
    """CUDA GPUs this process may use, without importing torch: ``nvidia-smi -L`` lines, capped by
    ``CUDA_VISIBLE_DEVICES`` when it is set."""
    listed = 0
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
            listed = sum(line.startswith("GPU ") for line in out.stdout.splitlines()) if out.returncode == 0 else 0
        except (OSError, subprocess.TimeoutExpired):
            listed = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        listed = min(listed, len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]))
    return listed


def config_file(strategy: str, root: str | os.PathLike[str] = ".") -> Path:
    """``configs/accelerate/<strategy>.yaml`` under the project ``root``.

    Raises:
        LaunchError: the file is missing.
    """
    path = Path(root) / CONFIG_DIR / f"{strategy}.yaml"
    if not path.is_file():
        raise LaunchError(f"launch.strategy: {path} not found; run from the project root (strategies: "
                          f"{', '.join(p.stem for p in sorted((Path(root) / CONFIG_DIR).glob('*.yaml')))})")
    return path


def check_launch(launch: LaunchParams, gpus: int) -> None:
    """Refuse settings this machine cannot run as asked, before any rank starts.

    Raises:
        LaunchError: a sharding strategy without GPUs, or more processes per node than GPUs.
    """
    if launch.strategy in GPU_STRATEGIES and gpus == 0:
        raise LaunchError(
            f"launch.strategy: {launch.strategy} shards the model across GPUs and this machine has none "
            f"(accelerate would quietly run plain DDP on the CPU); set launch.strategy: ddp here")
    if gpus and launch.processes > gpus:
        raise LaunchError(f"launch.processes: {launch.processes} processes per node but {gpus} GPU(s) visible; "
                          f"run one process per GPU (NPROC={gpus})")


def accelerate_command(launch: LaunchParams, module: str, args: Sequence[str], *, gpus: int,
                       python: str = sys.executable, cpus: int | None = None) -> list[str]:
    """The ``accelerate launch`` command line that runs ``python -m module args`` on every rank of
    this node.

    On a CPU the ranks share the cores (``--num_cpu_threads_per_process``) unless
    ``OMP_NUM_THREADS`` is set; one node picks a free port when ``master_port`` is 0.
    """
    cmd = [python, "-m", "accelerate.commands.launch", "--config_file", str(config_file(launch.strategy)),
           "--num_processes", str(launch.world_size), "--num_machines", str(launch.nodes),
           "--machine_rank", str(launch.node_rank), "--main_process_port", str(launch.master_port)]
    if launch.nodes > 1:
        cmd += ["--main_process_ip", launch.master_addr]
    if not gpus and not os.environ.get("OMP_NUM_THREADS"):
        threads = max(1, (cpus or os.cpu_count() or 1) // launch.processes)
        cmd += ["--num_cpu_threads_per_process", str(threads)]
    return [*cmd, "--module", module, *args]


def leave_stop_note() -> None:
    """Tell the stage's parent that the run stopped on SIGTERM (called by rank 0 before it exits)."""
    note = os.environ.get(STOP_NOTE_ENV)
    if note:
        Path(note).touch()


def rank_pids(root: int) -> list[int]:
    """The processes under ``root`` that catch SIGUSR1 (the ranks, once their handlers are in),
    from /proc; empty where there is no /proc."""
    table: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            table[int(name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    below, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in table.items() if ppid == parent]
        below += children
        frontier += children
    return [pid for pid in below if _catches(pid, signal.SIGUSR1)]


def _catches(pid: int, signum: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def _ignore_user_signals() -> None:
    """In the launcher, before exec: SIGUSR1/SIGUSR2 would end torchrun; the ranks inherit this
    until their stage script installs its handlers (its first line)."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def run_ranks(cmd: Sequence[str], say: Callable[[str], None] | None = None) -> int:
    """Run the launcher ``cmd`` and relay SIGUSR1, SIGUSR2 and SIGTERM to its ranks until it exits.

    Returns:
        The launcher's exit status, or 143 when the run stopped on SIGTERM.
    """
    say = say or (lambda line: print(f"launch: {line}", file=sys.stderr, flush=True))
    fd, note_path = tempfile.mkstemp(prefix="nexus-stop-")
    os.close(fd)
    note = Path(note_path)
    note.unlink()  # rank 0 creates it when it stops on SIGTERM
    proc = subprocess.Popen(list(cmd), env={**os.environ, STOP_NOTE_ENV: str(note)},
                            preexec_fn=_ignore_user_signals)
    terminated = False

    def relay(signum: int, frame: FrameType | None) -> None:
        nonlocal terminated
        targets = rank_pids(proc.pid)
        name = signal.Signals(signum).name
        terminated = terminated or signum == signal.SIGTERM
        if targets:
            say(f"{name} handed to the ranks (PIDs {', '.join(map(str, targets))})")
            for pid in targets:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
        elif signum == signal.SIGTERM:
            say("SIGTERM before any rank is up: stopping the launcher")
            proc.terminate()
        else:
            say(f"{name} not delivered: no rank has installed its handlers yet (seconds after the start)")

    previous = {signum: signal.signal(signum, relay) for signum in RELAYED}
    say(f"PID {os.getpid()} starts the ranks (kill -USR1/-USR2/-TERM {os.getpid()} reaches every rank): "
        + " ".join(cmd))
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reached the launcher and the ranks too: let them stop
                say("Ctrl-C: waiting for the launcher to stop the ranks (no checkpoint is written)")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    stopped = terminated or note.exists()
    note.unlink(missing_ok=True)
    if stopped:
        say("stopped on SIGTERM: the checkpoint is written; rerun to resume")
        return EXIT_SIGTERM
    return rc


def relaunch(launch: LaunchParams, module: str, args: Sequence[str]) -> int:
    """Check ``launch`` against this machine and run ``python -m module args`` on its ranks (see
    the module's doc).

    Raises:
        LaunchError: the settings cannot run here.
    """
    gpus = visible_gpus()
    check_launch(launch, gpus)
    return run_ranks(accelerate_command(launch, module, args, gpus=gpus))

