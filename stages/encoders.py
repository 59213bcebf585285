"""Convert the encoders that params.yaml's capabilities name (configs/encoders.yaml: pinned wheels).

DVC runs it (see dvc.yaml); by hand, from the project root:

    python stages/encoders.py --config configs/encoders.yaml --out models/encoders

`--help` lists every option. The work is done by `nexus encoders` (nexus/cli.py, then
nexus/encoder_stage.py, which converts through nexus/encoders/convert.py).
"""

import sys

from _interpreter import use_project_python

use_project_python()  # before nexus: `python` may be the system's (see stages/_interpreter.py)

from nexus.cli import main  # noqa: E402 - after the interpreter check

if __name__ == "__main__":
    sys.exit(main(["encoders", *sys.argv[1:]]))
