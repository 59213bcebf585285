"""Organize stage: catalog the data files and route them to capabilities (user files untouched).

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/organize.py --out data/organized [--move]

`--help` lists every option. The work is done by `nexus organize` (nexus/cli.py).
"""

import sys

from nexus.cli import main

if __name__ == "__main__":
    sys.exit(main(["organize", *sys.argv[1:]]))
