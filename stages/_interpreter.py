"""Run a stage on the project's interpreter, whatever ``python`` the user's shell finds first.

DVC runs each stage's ``cmd`` (``python stages/<stage>.py ...``) through the shell it was started
from: without the virtualenv activated, ``python`` is the system interpreter, which cannot import
nexus. :func:`use_project_python` re-executes the stage with the project's virtualenv
(``$NEXUS_PYTHON``, else ``<project>/.venv/bin/python``) when the current interpreter lacks nexus,
or stops with one line saying what to run. Standard library only: it runs before anything else.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
REEXEC_FLAG = "NEXUS_STAGE_REEXEC"  # set for the re-executed process: never loop


def use_project_python() -> None:
    """Return when nexus imports here; else re-exec on the project's interpreter, or exit 1."""
    try:
        import nexus  # noqa: F401 - the check itself
    except ImportError:
        pass
    else:
        return
    candidates = [os.environ.get("NEXUS_PYTHON"), str(PROJECT / ".venv" / "bin" / "python")]
    if not os.environ.get(REEXEC_FLAG):
        for candidate in filter(None, candidates):
            if os.access(candidate, os.X_OK):
                os.environ[REEXEC_FLAG] = "1"
                os.execv(candidate, [candidate, *sys.argv])
    sys.exit(f"error: {sys.executable} cannot import nexus and no project virtualenv was found at "
             f"{candidates[1]}; run `make install` (or `make repro`, which uses it), or activate the "
             "environment that has nexus installed")
