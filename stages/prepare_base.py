"""Convert the embedded SmolLM2-135M-Instruct GGUF (or --source) into an HF folder, once.

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/prepare_base.py --out models/base

`--help` lists every option. The work is done by `nexus prepare-base` (nexus/cli.py).
"""

import sys

from _interpreter import use_project_python

use_project_python()  # before nexus: `python` may be the system's (see stages/_interpreter.py)

from nexus.cli import main  # noqa: E402 - after the interpreter check

if __name__ == "__main__":
    sys.exit(main(["prepare-base", *sys.argv[1:]]))
