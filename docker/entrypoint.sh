#!/bin/sh
# nexus-entrypoint: runs the container's command (default `make train CAPS=cot`) under `tini -g`
# and relays docker's signals to the training process. See docker/README.md, "Signals".
#
# Why a relay: `make train` runs make -> dvc repro -> python stages/train.py. Sending docker's
# signals to that whole process group (plain `tini -g -- make ...`) breaks every control:
#   SIGUSR1  make survives (it toggles its debug output) but dvc dies (Python's default action);
#   SIGUSR2  make and dvc both die;
#   SIGTERM  make and dvc die at once, tini exits with make, and the kernel kills the trainer in the
#            middle of its checkpoint (tini is PID 1: when it exits, everything in the container dies).
# So the command runs in a process group of its own (under `docker run -t`, the terminal's
# foreground group, so Ctrl-C and interactive programs behave as in a terminal); tini -g delivers
# docker's signals to this relay alone, and the relay hands each one on:
#   SIGUSR1, SIGUSR2  to the topmost processes that catch it (the trainer; never make).
#   SIGTERM, SIGINT, SIGHUP  (docker stop, Ctrl-C of an attached `docker run`):
#            SIGTERM to the topmost processes that catch SIGTERM (the trainer checkpoints and exits
#            143, then dvc and make stop on that failure). While nothing catches SIGTERM (no training
#            step running), SIGINT to the command's process group: DVC and Python stages stop as on
#            Ctrl-C. NEXUS_STOP_TIMEOUT seconds (default 60) after that SIGINT, SIGTERM to every
#            process left, and SIGKILL as long again later. A second stop signal sends SIGTERM to
#            every process at once.
# The relay is a child subreaper and, once stopping, waits for every descendant, so the container
# lives until the checkpoint is written (docker's `stop -t` is the only bound: use `-t 120`).
# Exit status: the command's (128+N when signal N ended it).
set -eu

if [ "$#" -eq 0 ]; then
    set -- make train CAPS=cot
fi

# Bind mounts keep the host's owner: say so when this user cannot write them (see docker/README.md).
for dir in /workspace /workspace/models /workspace/.dvc/cache; do
    if [ -d "$dir" ] && [ ! -w "$dir" ]; then
        echo "nexus-entrypoint: warning: $dir is not writable by uid $(id -u):$(id -g);" \
            "build with --build-arg NEXUS_UID=\$(id -u) --build-arg NEXUS_GID=\$(id -g)" \
            "or run with --user (docker/README.md)" >&2
    fi
done

relay=$(cat <<'PYTHON'
import ctypes
import os
import signal
import sys
import time

STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
RELAY = (signal.SIGUSR1, signal.SIGUSR2)
WATCH = STOP + RELAY + (signal.SIGCHLD,)
# make catches SIGUSR1 (debug toggle) and SIGTERM (it kills its own children): never a target.
NOT_TARGETS = ("make", "gmake")
PR_SET_CHILD_SUBREAPER = 36
SETTLE_SECONDS = 5.0  # after the last SIGTERM catcher ends, let dvc and make wind down before SIGINT


def log(message):
    sys.stderr.write(f"nexus-entrypoint: {message}\n")
    sys.stderr.flush()


def process_table():
    """{pid: (ppid, comm)} of every process this relay can see."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        close = stat.rindex(")")
        table[int(name)] = (int(stat[close + 2 :].split()[1]), stat[stat.index("(") + 1 : close])
    return table


def catches(pid, signum):
    """Whether process ``pid`` has a handler installed for ``signum`` (SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def children_of(table):
    """ppid -> [pid] for a process table."""
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    return children


def descendants():
    """(pid, comm) of every process below this relay."""
    table = process_table()
    children = children_of(table)
    found, stack = [], list(children.get(os.getpid(), ()))
    while stack:
        pid = stack.pop()
        found.append((pid, table[pid][1]))
        stack.extend(children.get(pid, ()))
    return found


def topmost_catchers(signum):
    """Processes below this relay that catch ``signum`` and have no such process above them.

    The trainer's own helpers (DataLoader workers, which inherit its handlers) are left to it, and
    so are a launcher's ranks when the launcher itself catches the signal (torchrun and SIGTERM).
    """
    table = process_table()
    children = children_of(table)
    found, stack = [], list(children.get(os.getpid(), ()))
    while stack:
        pid = stack.pop()
        if table[pid][1] not in NOT_TARGETS and catches(pid, signum):
            found.append((pid, table[pid][1]))
        else:
            stack.extend(children.get(pid, ()))
    return found


def send(pid, signum):
    try:
        os.kill(pid, signum)
        return True
    except OSError:
        return False


def exit_code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 1


class Relay:
    def __init__(self, command):
        self.command = command
        self.pid = None
        self.timeout = float(os.environ.get("NEXUS_STOP_TIMEOUT") or 60)
        self.stopping_since = None
        self.last_catcher_seen = None
        self.int_sent_at = None
        self.term_all_at = None
        self.kill_all_done = False
        self.signalled = set()

    def start(self):
        interactive = os.isatty(0)
        self.pid = os.fork()
        if self.pid == 0:  # the command: own process group, default signal dispositions
            try:
                os.setpgid(0, 0)
                if interactive:
                    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                    try:
                        os.tcsetpgrp(0, os.getpgrp())
                    except OSError:
                        pass
                # Python ignores SIGPIPE and SIGXFSZ, and a relay started in the background inherits
                # SIGINT/SIGQUIT ignored (a shell's `cmd &`): the command gets them all back
                for signum in (signal.SIGTTOU, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT,
                               signal.SIGHUP):
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, ())
                os.execvp(self.command[0], self.command)
            except OSError as exc:
                log(f"cannot run {self.command[0]}: {exc}")
                os._exit(126 if isinstance(exc, PermissionError) else 127)
        try:
            os.setpgid(self.pid, self.pid)
        except OSError:
            pass

    def relay(self, signum):
        name = signal.Signals(signum).name
        targets = topmost_catchers(signum)
        for pid, comm in targets:
            send(pid, signum)
        if targets:
            log(f"{name} -> " + ", ".join(f"{comm} (pid {pid})" for pid, comm in targets))
        else:
            log(f"{name}: no process handles it (no training step is running); ignored")

    def stop(self, signum):
        name = signal.Signals(signum).name
        if self.stopping_since is None:
            log(f"{name}: stopping (SIGTERM to the trainer, which checkpoints; then the pipeline ends)")
            self.stopping_since = time.monotonic()
            self.advance()
        else:
            log(f"{name} again: SIGTERM to every process")
            self.term_all()

    def term_all(self):
        for pid, _comm in descendants():
            send(pid, signal.SIGTERM)
        if self.term_all_at is None:
            self.term_all_at = time.monotonic()

    def advance(self):
        """One step of an orderly stop; called on the stop signal and every half second after."""
        now = time.monotonic()
        catchers = topmost_catchers(signal.SIGTERM)
        for pid, comm in catchers:
            if pid not in self.signalled:
                self.signalled.add(pid)
                send(pid, signal.SIGTERM)
                log(f"SIGTERM -> {comm} (pid {pid})")
        if catchers:
            self.last_catcher_seen = now
        elif self.int_sent_at is None:
            if self.last_catcher_seen is None or now - self.last_catcher_seen >= SETTLE_SECONDS:
                self.int_sent_at = now
                try:
                    os.killpg(self.pid, signal.SIGINT)
                    log("nothing catches SIGTERM: SIGINT to the command's process group")
                except OSError:
                    pass
        elif self.term_all_at is None and now - self.int_sent_at >= self.timeout:
            log(f"still running {self.timeout:g}s after SIGINT: SIGTERM to every process")
            self.term_all()
        if self.term_all_at is not None and not self.kill_all_done and now - self.term_all_at >= self.timeout:
            log(f"still running {self.timeout:g}s after SIGTERM: SIGKILL to every process")
            self.kill_all_done = True
            for pid, _comm in descendants():
                send(pid, signal.SIGKILL)

    def run(self):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans (e.g. a checkpointing trainer) stay ours
        except (OSError, AttributeError):
            pass
        signal.pthread_sigmask(signal.SIG_BLOCK, WATCH)
        for signum in (signal.SIGTTOU, signal.SIGTTIN):
            signal.signal(signum, signal.SIG_IGN)  # never stopped for writing to a terminal we handed on
        self.start()
        status = None
        while True:
            info = signal.sigtimedwait(WATCH, 0.5)
            if info is not None:
                if info.si_signo in RELAY:
                    self.relay(info.si_signo)
                elif info.si_signo in STOP:
                    self.stop(info.si_signo)
            children_left = True
            while True:
                try:
                    pid, wait_status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    children_left = False
                    break
                if pid == 0:
                    break
                if pid == self.pid:
                    status = wait_status
            if status is not None and (self.stopping_since is None or not children_left):
                return exit_code(status)
            if self.stopping_since is not None:
                self.advance()


sys.exit(Relay(sys.argv[1:]).run())
PYTHON
)

# The relay's code travels in the environment (and leaves it) so that `ps` shows a short command line.
NEXUS_RELAY_CODE=$relay
export NEXUS_RELAY_CODE
exec python3 -I -c 'import os; exec(os.environ.pop("NEXUS_RELAY_CODE"))' "$@"
