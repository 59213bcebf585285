"""Train one capability: load the base, format its organized records, train (TRL + PEFT), save.

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/train.py --capability cot --out models/capabilities/cot

`--help` lists every option. The work is done by `nexus train` (nexus/cli.py). The signal handlers
(SIGUSR1 pause, SIGUSR2 checkpoint, SIGTERM checkpoint and stop; see nexus/signals.py) are installed
first, before torch loads, and stay until the process exits.
"""

import sys

from _interpreter import use_project_python

use_project_python()  # before nexus: `python` may be the system's (see stages/_interpreter.py)

from nexus.signals import install_stage_signals  # noqa: E402 - after the interpreter check

if __name__ == "__main__":
    install_stage_signals()  # first: a signal during the imports below (torch: seconds) is handled too
    from nexus.cli import main
    from nexus.logs import exit_now

    rc = main(["train", *sys.argv[1:]])
    if rc == 0:
        exit_now(0)  # the output is written and the checkpoints are gone: skip the ~2 s teardown
    sys.exit(rc)
