"""`nexus plan`: the seed's dry-run view, without importing torch."""

import subprocess
import sys

from tests.project import ROOT, env

NO_TORCH = """
import sys
from nexus.cli import main
code = main(["plan", "--caps", "all"])
assert "torch" not in sys.modules, "plan imported torch"
assert "transformers" not in sys.modules, "plan imported transformers"
sys.exit(code)
"""


def test_plan_prints_the_queue_and_imports_no_torch():
    result = subprocess.run([sys.executable, "-c", NO_TORCH], cwd=ROOT, env=env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "base model   models/base" in out
    assert "1. cot" in out and "sft/lora" in out
    assert "5. streaming" in out
    assert "omni" in out and "skipped: not implemented yet" in out
    assert "modalities" in out and "mode" in out
    assert "DVC" in out


def test_plan_rejects_unknown_capabilities_in_one_line():
    result = subprocess.run([sys.executable, "-m", "nexus.cli", "plan", "--caps", "nosuch"], cwd=ROOT,
                            env=env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown capability 'nosuch'")
    assert result.stderr.count("\n") == 1
