"""Report stage: the scorecard of base, each capability model and the merged model on every metric.

DVC runs it (see dvc.yaml); by hand, from the project root with the virtualenv active:

    python stages/report.py --out reports/scorecard

`--help` lists every option. The work is done by `nexus report` (nexus/cli.py).
"""

import sys

from nexus.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
