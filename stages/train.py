"""Train one capability: load the base, format its organized records, train (TRL + PEFT), save.

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/train.py --capability cot --out models/capabilities/cot

`--help` lists every option. The work is done by `nexus train` (nexus/cli.py).
"""

import sys

from nexus.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
