"""Organize stage: catalog the data files and route them to capabilities (user files untouched).

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/organize.py --out data/organized [--move]

`--help` lists every option. The work is done by `nexus organize` (nexus/cli.py). Every data file
is judged on its own: one that cannot be data (a FIFO, a symlink out of its folder, binary or broken
JSON, records its format refuses, ...) is listed as unplaced with its reason, and the run goes on.
"""

import sys

from _interpreter import use_project_python

use_project_python()  # before nexus: `python` may be the system's (see stages/_interpreter.py)

from nexus.cli import main  # noqa: E402 - after the interpreter check

if __name__ == "__main__":
    sys.exit(main(["organize", *sys.argv[1:]]))
