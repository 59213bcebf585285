"""Plan speed: wall time of ``nexus plan --caps CAPS``, and of the ``Repo.status`` call it replaced.

Each measurement is a fresh process (interpreter start and imports included, as ``make plan`` pays
them), repeated ``--repeat`` times; the best and the median are printed. Three projects:

- ``fresh``: a copy of this checkout without dvc.lock, as a fresh clone (every stage never run);
- ``organized``: the same copy after a real ``dvc repro organize`` (one stage in dvc.lock);
- ``root``: this checkout as it stands (its own dvc.lock, if any).

``old`` is what the plan did before: ``Repo.status(targets=[train@/eval@ each capability] (+ merge,
report for a group), with_deps=True)``, which rereads dvc.yaml and dvc.lock for every target. Run on
demand (not part of the test suite)::

    python benchmarks/plan_speed.py --caps cot,all --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nexus import registry  # noqa: E402 - after the path set-up above
from tests.project import copy_project, run  # noqa: E402

OLD = """
import sys
from dvc.repo import Repo
with Repo(".") as repo:
    repo.status(targets=sys.argv[1:], with_deps=True)
"""


def _targets(caps: str) -> list[str]:
    selected, _ = registry.resolve(caps)
    extra = ["merge", "report"] if registry.is_group(caps) else []
    return [f"{kind}@{name}" for name in selected for kind in ("train", "eval")] + extra


def _time(cmd: list[str], cwd: Path, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caps", default="cot,all", help="CAPS values to plan, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-old", action="store_true", help="skip timing the replaced Repo.status call")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nexus-plan-speed-") as tmp:
        copy = copy_project(Path(tmp) / "project")
        for name, project in (("fresh", copy), ("organized", copy), ("root", ROOT)):
            if name == "organized":
                run(copy, "dvc", "repro", "organize", timeout=600)
            for caps in args.caps.split(","):
                plan = [sys.executable, "-m", "nexus.cli", "plan", "--caps", caps]
                best, median = _time(plan, project, args.repeat)
                line = f"{name:<9} plan --caps {caps:<8} best {best:.2f} s  median {median:.2f} s"
                if not args.no_old:
                    best, median = _time([sys.executable, "-c", OLD, *_targets(caps)], project, args.repeat)
                    line += f"   | old Repo.status best {best:.2f} s  median {median:.2f} s"
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
