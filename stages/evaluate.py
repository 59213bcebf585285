"""Evaluate one capability on its held-out split, base model versus trained model.

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/evaluate.py --capability cot --model models/capabilities/cot

`--help` lists every option. The work is done by `nexus eval` (nexus/cli.py).
"""

import sys

from nexus.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
