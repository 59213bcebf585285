"""A trained adapter loads from any directory, without Nexus, by the snippet its own model card gives.

A project folder whose params.yaml keeps the default, project-relative ``base.model: models/base``
(the tiny random Llama copied there), the real GSM8K sample organized by the real organizer, and
``nexus train`` for 2 steps of cot run in-process from the project root (as the train stage runs).
Then a fresh interpreter (``python -I``: no PYTHONPATH, no user site), started in another folder
with the Hub offline, runs the Python block of the adapter's README.md: AutoPeftModelForCausalLM
by absolute path, the chat template, a few generated tokens.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nexus.cli import main
from tests.project import ROOT, env

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")

NO_NEXUS = """
import sys
assert not any(n == "nexus" or n.startswith("nexus.") for n in sys.modules), "imported nexus"
print("generated:", repr(tokenizer.decode(out[0, ids["input_ids"].shape[1]:])))
"""


@pytest.fixture
def trained(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project folder after `nexus train --capability cot` (2 steps) under umask 022."""
    root = tmp_path / "project"
    shutil.copytree(tiny_model_dir, root / "models" / "base")
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert data["base"]["model"] == "models/base"
    data["organize"]["sources"] = [str(ROOT / "data" / "samples" / "gsm8k")]
    data["capabilities"]["cot"].update(init_from="models/base", max_steps=2, sample_size=8, eval_size=2,
                                       batch_size=1, max_length=256, method="sft")
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.chdir(root)
    monkeypatch.setenv("NEXUS_CHECKPOINT_DIR", str(root / "checkpoints"))
    previous = os.umask(0o022)
    try:
        assert main(["organize", "--params", "params.yaml", "--out", "data/organized"]) == 0
        assert main(["detect", "models/base", "--out", "data/modality.json"]) == 0
        assert main(["train", "--params", "params.yaml", "--capability", "cot", "--out", "models/capabilities/cot",
                     "--data", "data/organized", "--modality", "data/modality.json"]) == 0
    finally:
        os.umask(previous)
    return root


def test_adapter_loads_from_another_folder_by_its_model_card(trained: Path, tmp_path: Path) -> None:
    out = trained / "models" / "capabilities" / "cot"
    base = (trained / "models" / "base").resolve()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(base)  # absolute: resolves from any folder
    run_card = json.loads((out / "run_card.json").read_text())
    assert run_card["base_model"] == "models/base" and run_card["base_model_path"] == str(base)

    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["base_model"] == str(base) and meta["library_name"] == "peft"
    assert meta["tags"][:3] == ["nexus", "cot", "sft"]
    assert "fine-tuned version of" not in card and "steps: 2," in card and "reports/eval/cot/metrics.json" in card
    assert "train_first500.jsonl`: 500 records" in card  # the organizer's count of the data file

    # normal permissions under umask 022: folders 0755, weights and cards 0644
    assert out.stat().st_mode & 0o777 == 0o755
    for name in ("adapter_model.safetensors", "adapter_config.json", "README.md", "run_card.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name

    snippet = card.split("```python\n")[1].split("```")[0].replace("max_new_tokens=256", "max_new_tokens=6")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    loaded = subprocess.run([sys.executable, "-I", "-c", snippet + NO_NEXUS], cwd=elsewhere,
                            env={k: v for k, v in env().items() if k != "PYTHONPATH"},
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "generated: '" in loaded.stdout
