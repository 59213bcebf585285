"""Many capabilities into one model (PEFT merge, and chaining), and the scorecard, through real dvc repro."""

import json
import subprocess
import sys

import yaml

from nexus.params_edit import select_capabilities
from tests.project import copy_project, edit_params, env, git, run, tiny_params

LOAD_WITHOUT_NEXUS = """
import sys
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
merged = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(merged)
tok = AutoTokenizer.from_pretrained(merged)
ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)
out = model.generate(**ids, max_new_tokens=4, do_sample=False)
assert out.shape[1] > ids["input_ids"].shape[1]
base = AutoModelForCausalLM.from_pretrained(sys.argv[2])
PeftModel.from_pretrained(base, merged + "/adapter/merged")
assert not any(name == "nexus" or name.startswith("nexus.") for name in sys.modules), "imported nexus"
print("loaded", type(model).__name__)
"""


def test_merge_chain_and_scorecard(tmp_path, tiny_model_dir):
    repo = copy_project(tmp_path / "project")
    tiny_params(repo, tiny_model_dir, steps=2)
    select_capabilities(repo / "params.yaml", ["cot", "reasoning", "thinking"])  # tools, streaming parked: time
    # thinking trains in a chain on top of cot; cot and reasoning are merged as adapters
    edit_params(repo, capabilities__thinking__init_from="models/capabilities/cot",
                merge__capabilities=["cot", "reasoning"])
    git(repo, "commit", "-qam", "tiny merge")

    dag = run(repo, "dvc", "dag", "train@thinking").stdout
    assert "train@cot" in dag

    result = run(repo, "dvc", "repro", "merge", "train@thinking")
    assert "Running stage 'merge'" in result.stdout
    thinking = repo / "models" / "capabilities" / "thinking"
    assert (thinking / "config.json").is_file() and not (thinking / "adapter_config.json").exists()
    card = json.loads((repo / "models" / "merged" / "merge_card.json").read_text())
    assert card["capabilities"] == ["cot", "reasoning"] and card["combination"] == "cat"

    loaded = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_NEXUS, str(repo / "models" / "merged"),
                             str(tiny_model_dir)], cwd=tmp_path, env=env(), capture_output=True, text=True,
                            timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded LlamaForCausalLM" in loaded.stdout

    report = run(repo, "dvc", "repro", "report")
    assert "Running stage 'report'" in report.stdout
    scorecard = repo / "reports" / "scorecard"
    metrics = json.loads((scorecard / "metrics.json").read_text())
    capabilities = list(yaml.safe_load((repo / "params.yaml").read_text())["capabilities"])
    assert list(metrics) == ["base", *capabilities, "merged"]  # the report trains every capability
    assert list(metrics["base"]) == capabilities and list(metrics["merged"]) == capabilities
    card = json.loads((scorecard / "scorecard.json").read_text())
    for name in capabilities:  # the eval stages' figures, read back, not measured again
        assert list(metrics[name]) == [name]
        evaluated = json.loads((repo / "reports" / "eval" / name / "metrics.json").read_text())
        assert card["details"]["base"][name] == evaluated["base"]
        assert card["details"][name][name] == evaluated["trained"]
        assert card["n"][name] == evaluated["n"]
    table = (scorecard / "scorecard.md").read_text()
    assert "| merged |" in table and "thinking (think_format" in table
    assert (scorecard / "scorecard.png").read_bytes()[:4] == b"\x89PNG"
    assert (scorecard / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (scorecard / "samples.png").read_bytes()[:4] == b"\x89PNG"  # text capabilities: the "none" sheet
    assert card["samples"] == {} and "## Samples" not in table
    assert "reports/scorecard/metrics.json" in run(repo, "dvc", "metrics", "show").stdout
    assert "merged" in (repo / "results" / "scorecard.csv").read_text()
