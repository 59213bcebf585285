"""Every training method trains real steps on a tiny model through the train stage's entry point.

One project folder per module: the real sample files organized by the real organizer, a tiny random
Llama with the SmolLM2 tokenizer as the base, params.yaml shrunk to 2 steps. Each test switches
``capabilities.<cap>.method`` (as ``dvc exp run -S`` would) and runs ``nexus train`` (what
stages/train.py calls) in-process, then reads the run card it wrote.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from nexus.cli import main
from tests.project import ROOT, tiny_params

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A project folder: params.yaml (2 steps), organized real samples, modality report."""
    root = tmp_path_factory.mktemp("methods")
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    tiny_params(root, tiny_model_dir, steps=2)
    data = yaml.safe_load((root / "params.yaml").read_text())
    data["organize"]["sources"] = [str(ROOT / "data" / "samples")]
    for entry in data["capabilities"].values():
        entry.update(batch_size=1)
    data["methods"]["grpo"]["num_generations"] = data["methods"]["ppo"]["num_generations"] = 2
    data["methods"]["distill"]["teacher"] = str(tiny_model_dir)
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["organize", "--params", str(root / "params.yaml"), "--out", str(root / "organized")]) == 0
    assert main(["detect", str(tiny_model_dir), "--out", str(root / "modality.json")]) == 0
    return root


def set_params(root: Path, capability: str, **values: object) -> None:
    """Edit capabilities.<capability> in the project's params.yaml."""
    path = root / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data["capabilities"][capability].update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def train(root: Path, capability: str, out: str, *flags: str) -> dict:
    """Run `nexus train` in ``root`` and return the run card."""
    code = main(["train", "--params", "params.yaml", "--capability", capability, "--out", out,
                 "--data", "organized", "--modality", "modality.json", *flags])
    assert code == 0
    return json.loads((root / out / "run_card.json").read_text())


@pytest.mark.parametrize("method", ["sft", "cpt", "distill", "dpo", "orpo", "kto", "grpo", "ppo", "safety",
                                    "anti-refusal"])
def test_method_trains_two_steps(project: Path, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    set_params(project, "cot", method=method)
    card = train(project, "cot", f"out/{method}")
    assert card["method"] == method and card["steps"] == 2
    if method in ("grpo", "ppo"):  # methods.<method> in params.yaml reached the trainer
        assert card["params"]["method_settings"]["num_generations"] == 2
    assert card["train_loss"] == card["train_loss"]  # not NaN
    assert (project / f"out/{method}/adapter_model.safetensors").is_file()
    history = (project / "reports/train/cot/metrics.json").read_text()
    assert '"step": 2' in history or json.loads(history)["step"] == 2


def test_preference_pairs_built_from_own_data_when_no_file(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    set_params(project, "cot", method="dpo")
    card = train(project, "cot", "out/dpo-own")
    assert card["method_data"]["source"].startswith("built from the capability's own examples")
    assert card["method_data"]["rows"] >= 1
    manifest = json.loads((project / "organized/cot/manifest.json").read_text())
    assert not [f for f in manifest["method_files"] if f["kind"] == "preference"]


def test_preference_file_routed_to_chat_capability(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    set_params(project, "streaming", method="orpo")
    card = train(project, "streaming", "out/orpo-streaming")
    assert "v1_dpo_demo.jsonl" in card["method_data"]["source"]
    assert card["method_data"]["rows"] == 10  # every pair of the real file


def test_method_data_mismatch_fails_before_loading(project: Path, monkeypatch, capsys) -> None:
    """cpt needs plain text: with no text file routed, one line names the manifest and the kind."""
    monkeypatch.chdir(project)
    organized = project / "organized-notext"
    shutil.copytree(project / "organized", organized, dirs_exist_ok=True)
    manifest = organized / "reasoning" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["method_files"] = [f for f in data["method_files"] if f["kind"] != "text"]
    manifest.write_text(json.dumps(data))
    set_params(project, "reasoning", method="cpt")
    code = main(["train", "--params", "params.yaml", "--capability", "reasoning", "--out", "out/none",
                 "--data", str(organized), "--modality", "modality.json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err[-1].startswith("error: method 'cpt' needs text data") and str(manifest) in err[-1]
    assert not (project / "out/none").exists()


def test_safety_eval_reports_refusal_rates(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    set_params(project, "cot", method="safety")
    card = train(project, "cot", "out/safety-eval")
    held = card["held_out_prompts"]
    assert {r["label"] for r in held} == {"harmful", "harmless"}
    assert main(["eval", "--params", "params.yaml", "--capability", "cot", "--model", "out/safety-eval",
                 "--data", "organized"]) == 0
    metrics = json.loads((project / "reports/eval/cot/metrics.json").read_text())
    for which in ("base", "trained"):
        assert 0.0 <= metrics[which]["refusal_rate"] <= 1.0
        assert 0.0 <= metrics[which]["false_refusal_rate"] <= 1.0
    assert metrics["n_safety"] == len(held)


def test_qlora_and_full_adapters(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    set_params(project, "cot", method="sft", adapter="qlora")
    card = train(project, "cot", "out/qlora")
    assert card["adapter"] == "qlora" and (project / "out/qlora/adapter_config.json").is_file()
    set_params(project, "cot", adapter="full")
    card = train(project, "cot", "out/full")
    assert (project / "out/full/config.json").is_file()
    assert not (project / "out/full/adapter_config.json").exists()
    set_params(project, "cot", adapter="lora")


def test_long_context_trains_at_four_times_the_context(project: Path, monkeypatch, tmp_path) -> None:
    """A tiny model with a 128-token context trains at 512 (RoPE x4) on examples longer than 128."""
    from transformers import AutoConfig

    from nexus.chat import token_ids
    from nexus.examples import load_examples
    from nexus.loading import load_tokenizer
    from tests.tiny import build_tiny_llama

    monkeypatch.chdir(project)
    short = build_tiny_llama(tmp_path / "short")
    config = AutoConfig.from_pretrained(short)
    config.max_position_embeddings = 128
    config.save_pretrained(short)
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["base"]["model"] = str(short)
    for entry in data["capabilities"].values():
        entry["init_from"] = str(short)
    data["capabilities"]["cot"].update(method="sft", adapter="lora", max_length=512)
    (project / "params-long.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["train", "--params", "params-long.yaml", "--capability", "cot", "--out", "out/long",
                 "--data", "organized", "--modality", "modality.json", "--long-context", "512"])
    assert code == 0
    card = json.loads((project / "out/long/run_card.json").read_text())
    saved = AutoConfig.from_pretrained(project / "out/long")
    assert saved.max_position_embeddings == 512
    assert saved.rope_parameters["rope_type"] == "linear" and saved.rope_parameters["factor"] == 4.0
    assert card["steps"] == 2 and card["params"]["long_context"] == 512
    examples = load_examples("cot", project / "organized", 2, 16, 42).train
    assert max(len(token_ids(e, load_tokenizer(short))) for e in examples) > 128
