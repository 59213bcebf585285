"""Prepare one capability: format its organized records, split them, write the split.

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/prepare.py --capability cot --out data/prepared/cot

`--help` lists every option. The work is done by `nexus prepare` (nexus/cli.py).
"""

import sys

from nexus.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
