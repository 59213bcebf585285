"""Merge stage: combine the capability adapters into one model (PEFT add_weighted_adapter).

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/merge.py --out models/merged

`--help` lists every option. The work is done by `nexus merge` (nexus/cli.py).
"""

import sys

from _interpreter import use_project_python

use_project_python()  # before nexus: `python` may be the system's (see stages/_interpreter.py)

from nexus.cli import main  # noqa: E402 - after the interpreter check

if __name__ == "__main__":
    sys.exit(main(["merge", *sys.argv[1:]]))
