"""Evaluate one capability on its held-out split, base model versus trained model.

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/evaluate.py --capability cot --model models/capabilities/cot

`--help` lists every option. The work is done by `nexus eval` (nexus/cli.py).
"""

import sys

from _interpreter import use_project_python

use_project_python()  # before nexus: `python` may be the system's (see stages/_interpreter.py)

from nexus.cli import main  # noqa: E402 - after the interpreter check

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
