"""Detect stage: which modalities the base model has, from its config.json or GGUF header.

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/detect.py models/base --out data/modality.json

`--help` lists every option. The work is done by `nexus detect` (nexus/cli.py).
"""

import sys

from _interpreter import use_project_python

use_project_python()  # before nexus: `python` may be the system's (see stages/_interpreter.py)

from nexus.cli import main  # noqa: E402 - after the interpreter check

if __name__ == "__main__":
    sys.exit(main(["detect", *sys.argv[1:]]))
