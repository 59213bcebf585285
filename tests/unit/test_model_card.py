"""Model cards and resolvable base paths (nexus.model_card) on real files, no model loaded."""

import ast
import json
import os

import yaml

from nexus.model_card import (
    base_license,
    capability_card,
    example_question,
    merged_card,
    point_adapter_at_base,
    resolvable_base,
)

RUN_CARD = {"capability": "cot", "method": "sft", "adapter": "lora", "is_adapter": True, "steps": 60,
            "train_loss": 1.2345, "final_loss": 1.01, "tokens_per_s": 812.5, "runtime_s": 61.2, "quick": False,
            "seed": 42, "base_model": "models/base", "base_model_path": "/abs/models/base",
            "train_examples": 488, "eval_examples": 12, "dropped": {"duplicate": 3},
            "data_files": ["data/samples/gsm8k/train_first500.jsonl"], "data_fingerprint": "abc123",
            "params": {"init_from": "models/base"}}


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def snippet(card: str) -> str:
    return card.split("```python\n")[1].split("```")[0]


def test_a_local_base_becomes_absolute_and_a_hub_id_stays(tmp_path, monkeypatch):
    (tmp_path / "models" / "base").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolvable_base("models/base") == str(tmp_path.resolve() / "models" / "base")
    assert resolvable_base("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_adapter_config_points_at_the_absolute_base_and_keeps_its_other_keys(tmp_path, monkeypatch):
    (tmp_path / "models" / "base").mkdir(parents=True)
    config = tmp_path / "adapter_config.json"
    config.write_text(json.dumps({"base_model_name_or_path": "models/base", "r": 16, "peft_type": "LORA"}))
    os.chmod(config, 0o644)
    monkeypatch.chdir(tmp_path)
    written = point_adapter_at_base(config, "models/base")
    data = json.loads(config.read_text())
    assert data == {"base_model_name_or_path": written, "r": 16, "peft_type": "LORA"}
    assert os.path.isabs(written) and os.path.isdir(written)
    assert config.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_license_read_from_the_base_card_front_matter(tmp_path):
    assert base_license(tmp_path) is None
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\nlanguage: en\n---\n# SmolLM2\nlicense: mit\n")
    assert base_license(tmp_path) == "apache-2.0"
    (tmp_path / "README.md").write_text("# no front matter\nlicense: mit\n")
    assert base_license(tmp_path) is None


def test_capability_card_front_matter_body_and_a_snippet_that_parses(tmp_path):
    files = [{"path": "data/samples/gsm8k/train_first500.jsonl", "records": 500}]
    card = capability_card(RUN_CARD, tmp_path / "models/capabilities/cot", files, 497, "What is 2 + 3?")
    meta = front_matter(card)
    assert meta["base_model"] == "/abs/models/base" and meta["library_name"] == "peft"
    assert meta["tags"][:3] == ["nexus", "cot", "sft"] and "license" not in meta
    assert "fine-tuned version of [None]" not in card
    for needle in ("`models/base` (as params.yaml names it; at save time `/abs/models/base`)",
                   "`data/samples/gsm8k/train_first500.jsonl`: 500 records",
                   "497 kept, 488 trained on, 12 held out", "duplicate: 3", "steps: 60, train_loss: 1.2345",
                   "tokens/s: 812.5", "reports/eval/cot/metrics.json", "eval@cot"):
        assert needle in card, needle
    code = snippet(card)
    ast.parse(code)
    assert "AutoPeftModelForCausalLM" in code and "apply_chat_template" in code
    assert json.dumps(str(tmp_path / "models/capabilities/cot")) in code and '"What is 2 + 3?"' in code
    assert len(code.strip().splitlines()) == 7


def test_full_model_card_says_transformers_and_names_the_base_license(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    full = {**RUN_CARD, "is_adapter": False, "base_model": str(base), "base_model_path": str(base)}
    card = capability_card(full, tmp_path / "out", [{"path": "a.jsonl"}], 3, "hi")
    meta = front_matter(card)
    assert meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    assert "AutoModelForCausalLM" in snippet(card) and "Peft" not in snippet(card)
    assert "- `a.jsonl`\n" in card  # no count when the manifest gave none
    assert f"- base model: `{base}`\n" in card  # an absolute base is named once


def test_example_question_is_a_short_single_turn_prompt():
    long = {"prompt": [{"role": "user", "content": "x" * 1000}]}
    tools = {"prompt": [{"role": "user", "content": "call it"}], "tools": [{"name": "f"}]}
    chat = {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}
    plain = {"prompt": [{"role": "user", "content": " What is 6 * 7? "}]}
    assert example_question([long, tools, chat, plain]) == "What is 6 * 7?"
    assert example_question([long]) == "What is 12 * 7 + 5?"


def test_merged_card_lists_capabilities_and_points_at_eval_outputs(tmp_path):
    merge = {"base_model": "models/base", "base_model_path": "/abs/models/base", "capabilities": ["cot", "reasoning"],
             "weights": [1.0, 0.5], "combination": "ties", "density": 0.5}
    card = merged_card(merge, tmp_path / "models/merged", {"cot": RUN_CARD})
    meta = front_matter(card)
    assert meta["library_name"] == "transformers" and {"nexus", "merged", "cot", "reasoning"} <= set(meta["tags"])
    assert "| cot | 1.0 | sft | 60 | 1.2345 | `data/samples/gsm8k/train_first500.jsonl` |" in card
    assert "| reasoning | 0.5 | ? | ? | ? |  |" in card and "ties, density 0.5" in card
    assert "reports/eval/<capability>/metrics.json" in card and "adapter/merged/" in card
    ast.parse(snippet(card))
    with_metrics = merged_card(merge, tmp_path, {}, {"cot": {"base": {"accuracy": 0.1}, "trained": {"accuracy": 0.4},
                                                             "n": 12}})
    assert "- cot: base {'accuracy': 0.1}, trained {'accuracy': 0.4} (n=12)" in with_metrics
