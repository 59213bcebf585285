"""``python -m nexus.serving chat|serve MODEL ...`` (the same verbs as ``nexus chat|serve``)."""

import sys

from nexus.serving.cli import main

sys.exit(main())
