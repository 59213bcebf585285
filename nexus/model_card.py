"""Outputs that load anywhere: the model card (README.md) of every output, and a base path that resolves.

A capability's adapter (``models/capabilities/<cap>``) and the merged model (``models/merged``) each
get a ``README.md`` in the Hugging Face model-card form: YAML front matter (``base_model``,
``library_name``, ``license`` when the base names one, ``tags``) and a body saying what the model is
(base, capability, method), what it learned from (data files with their record counts), the
training figures, where its held-out metrics are, and how to load it without Nexus.

An adapter records its base in ``adapter_config.json`` (``base_model_name_or_path``), and PEFT
loads that path from the caller's working directory: a project-relative ``models/base`` works only
from the project root. :func:`resolvable_base` gives the absolute path of a local base folder (a
Hub id stays as it is), and :func:`point_adapter_at_base` writes it; the project-relative name is
kept in the run card and the model card.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nexus.atomic import write_text_atomic

CARD_FILE = "README.md"
_LICENSE = re.compile(r"^license:\s*['\"]?([\w.\-]+)", re.MULTILINE)
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---", re.DOTALL)
_MAX_EXAMPLE_CHARS = 400
_FALLBACK_QUESTION = "What is 12 * 7 + 5?"


def resolvable_base(base: str | Path) -> str:
    """``base`` as a path that loads from any working directory: a local file or folder as its
    absolute path, anything else (a Hub id such as ``HuggingFaceTB/SmolLM2-135M-Instruct``) unchanged."""
    path = Path(base).expanduser()
    return str(path.resolve()) if path.exists() else str(base)


def point_adapter_at_base(config_file: str | Path, base: str | Path) -> str:
    """Set ``base_model_name_or_path`` of a saved ``adapter_config.json`` to :func:`resolvable_base`.

    Returns:
        The path written.
    """
    path = Path(config_file)
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = resolved = resolvable_base(base)
    write_text_atomic(json.dumps(config, indent=2) + "\n", path)
    return resolved


def base_license(base: str | Path) -> str | None:
    """The ``license:`` of a local base model's own card (its README.md front matter), if it names one."""
    card = Path(base) / CARD_FILE
    if not card.is_file():
        return None
    front = _FRONT_MATTER.match(card.read_text(encoding="utf-8", errors="replace"))
    found = _LICENSE.search(front.group(1)) if front else None
    return found.group(1) if found else None


def example_question(examples: list[dict[str, Any]]) -> str:
    """A held-out question to show in the loading snippet: the first single-turn text prompt short
    enough to read, else a generic one."""
    for example in examples:
        prompt = example.get("prompt") or []
        if len(prompt) == 1 and isinstance(prompt[0].get("content"), str) and not example.get("tools"):
            text = prompt[0]["content"].strip()
            if text and len(text) <= _MAX_EXAMPLE_CHARS:
                return text
    return _FALLBACK_QUESTION


def _front_matter(base: str, library: str, license_name: str | None, tags: list[str]) -> str:
    lines = ["---", f"base_model: {json.dumps(base)}", f"library_name: {library}"]
    if license_name:
        lines.append(f"license: {license_name}")
    lines += ["tags:", *(f"- {json.dumps(tag)}" for tag in dict.fromkeys(tags))]
    return "\n".join([*lines, "---", ""])


def load_snippet(folder: str | Path, adapter: bool, question: str) -> str:
    """Seven lines that load ``folder`` with plain transformers/PEFT and answer ``question`` through
    the chat template."""
    loader = ("from peft import AutoPeftModelForCausalLM as Auto" if adapter
              else "from transformers import AutoModelForCausalLM as Auto")
    path = json.dumps(str(folder))
    return "\n".join([
        "```python",
        f"{loader}\nfrom transformers import AutoTokenizer",
        f"model, tokenizer = Auto.from_pretrained({path}), AutoTokenizer.from_pretrained({path})",
        f"messages = [{{\"role\": \"user\", \"content\": {json.dumps(question, ensure_ascii=False)}}}]",
        "ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", "
        "return_dict=True)",
        "out = model.generate(**ids, max_new_tokens=256, do_sample=False)",
        "print(tokenizer.decode(out[0, ids[\"input_ids\"].shape[1]:], skip_special_tokens=True))",
        "```",
    ])


GENERATOR_OUTPUTS = {"nexus_sd3_projector": "SD3", "nexus_wan_projector": "Wan 2.1"}
"""A generation capability's ``output`` (run card) -> the diffusion model it conditions."""


def media_snippet(folder: str | Path, output: str, remote_code: bool = False) -> str:
    """How to load a multimodal output: a LLaVA folder with plain transformers (an image question),
    a Nexus composite through Nexus's loader (and, saved with ``remote_code``, through transformers'
    Auto classes with ``trust_remote_code=True``), an image generator through ``nexus generate-image``."""
    path = json.dumps(str(folder))
    if output in GENERATOR_OUTPUTS:
        kind, out = ("video", "clip.mp4") if output == "nexus_wan_projector" else ("image", "dog.png")
        sample = "sample" if kind == "image" else "frames"
        return "\n".join(["```bash", f"nexus generate-{kind} \"a sks dog in the snow\" --model {path} --out {out}",
                          "```", "", "```python", "from nexus.diffusion.generator import load_generator",
                          f"generator = load_generator({path})",
                          f"{sample} = generator.draw([\"a sks dog in the snow\"], steps=20)[0]"
                          f"  # a PIL {'image' if kind == 'image' else 'frame list'}", "```"])
    if output == "llava":
        body = [
            "from PIL import Image",
            "from transformers import AutoModelForImageTextToText, AutoProcessor",
            f"model = AutoModelForImageTextToText.from_pretrained({path})",
            f"processor = AutoProcessor.from_pretrained({path})",
            "messages = [{\"role\": \"user\", \"content\": \"<image>What number is written in this image?\"}]",
            "prompt = processor.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)",
            "image = Image.open(\"digit.png\").convert(\"RGB\")",
            "inputs = processor(images=[image], text=prompt, return_tensors=\"pt\")",
            "out = model.generate(**inputs, max_new_tokens=16, do_sample=False)",
            "print(processor.tokenizer.decode(out[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))",
        ]
    else:
        body = [
            "from nexus.multimodal.compose import load_omni  # registers the composite with transformers",
            "from nexus.multimodal.generate import generate_media",
            f"model, processor = load_omni({path})",
            "example = {\"prompt\": [{\"role\": \"user\", \"content\": \"<audio>Which digit is spoken?\"}],"
            " \"audios\": [\"clip.wav\"]}",
            "print(generate_media(model, processor, [example], max_new_tokens=16)[0])",
        ]
        if remote_code:  # the folder carries omni_model.py and an auto_map (nexus.multimodal.compose.save_omni)
            body += ["", "# without Nexus: the folder carries its modeling file (remote_code: true)",
                     "from transformers import AutoModelForImageTextToText",
                     f"model = AutoModelForImageTextToText.from_pretrained({path}, trust_remote_code=True)"]
    return "\n".join(["```python", *body, "```"])


def _base_line(base: str, base_path: str) -> str:
    where = f" (as params.yaml names it; at save time `{base_path}`)" if base_path != base else ""
    return f"- base model: `{base}`{where}"


def _data_lines(files: list[dict[str, Any]], counts: dict[str, Any]) -> list[str]:
    lines = [f"- `{f['path']}`" + (f": {f['records']} records" if f.get("records") is not None else "")
             for f in files] or ["- (no file recorded)"]
    dropped = ", ".join(f"{reason}: {n}" for reason, n in counts.get("dropped", {}).items()) or "none"
    lines.append(f"- examples: {counts.get('kept', '?')} kept, {counts.get('train_examples', '?')} trained on, "
                 f"{counts.get('eval_examples', '?')} held out (never trained on); dropped: {dropped}")
    return lines


def capability_card(run_card: dict[str, Any], folder: str | Path, data_files: list[dict[str, Any]],
                    kept: Any, question: str) -> str:
    """The README.md of one capability's output, from its run card.

    Args:
        run_card: what the train stage writes to ``run_card.json`` (its ``base_model`` is the
            project-relative name, ``base_model_path`` the resolvable one).
        folder: the output folder, as the loading snippet should name it.
        data_files: ``{"path", "records"}`` per source file (``records`` may be absent).
        kept: examples kept after formatting and dedupe.
        question: the snippet's example question (:func:`example_question`).
    """
    cap, method, adapter = run_card["capability"], run_card["method"], run_card["adapter"]
    is_adapter = bool(run_card.get("is_adapter"))
    base, base_path = run_card["base_model"], run_card.get("base_model_path", run_card["base_model"])
    tags = ["nexus", cap, method, adapter, "peft" if is_adapter else "transformers"]
    counts = {"kept": kept, "dropped": run_card.get("dropped", {}), "train_examples": run_card.get("train_examples"),
              "eval_examples": run_card.get("eval_examples")}
    output = run_card.get("output", "")  # llava / nexus_omni for the multimodal capabilities
    form = ("a PEFT adapter" if is_adapter else {
        "llava": "a transformers LLaVA (vision encoder, projector, language model; any LoRA merged)",
        "nexus_omni": "a Nexus composite (vision and audio encoders, projectors, language model; any LoRA merged)",
        **{output: f"a projector from the frozen language model into a frozen {model} diffusion model "
                   "(nexus_generator.json names both)" for output, model in GENERATOR_OUTPUTS.items()},
    }.get(output, "a full model (the adapter merged into its start model)"))
    remote_code = bool((run_card.get("params") or {}).get("remote_code"))
    snippet = media_snippet(folder, output, remote_code) if output else load_snippet(folder, is_adapter, question)
    return "\n".join([
        _front_matter(base_path, "peft" if is_adapter else "transformers", base_license(base_path), tags),
        f"# {cap}: {method} on `{base}`", "",
        f"Nexus capability `{cap}`, trained with `{method}` ({adapter}; {form}).", "",
        _base_line(base, base_path),
        f"- start model: `{run_card.get('params', {}).get('init_from', base)}`",
        f"- data fingerprint: `{run_card.get('data_fingerprint', '')}`", "",
        "## Data", "", *_data_lines(data_files, counts), "",
        "## Training", "",
        f"- steps: {run_card.get('steps')}, train_loss: {run_card.get('train_loss')}, final_loss: "
        f"{run_card.get('final_loss')}",
        f"- tokens/s: {run_card.get('tokens_per_s')}, runtime: {run_card.get('runtime_s')} s, quick: "
        f"{run_card.get('quick')}, seed: {run_card.get('seed')}",
        "- every setting and library version: `run_card.json` in this folder", "",
        "## Held-out metrics", "",
        f"Not measured at training time: `dvc repro eval@{cap}` scores the base and this model on the "
        f"held-out examples and writes `reports/eval/{cap}/metrics.json` (`predictions.jsonl` beside it); "
        "the `report` stage gathers every model in `reports/scorecard/`.", "",
        "## Load it", "",
        f"The question below is a held-out one, asked as training asked it (`data/prepared/{cap}/eval.jsonl`); "
        "no added instruction is needed.", "", snippet, "",
    ])


def merged_card(merge: dict[str, Any], folder: str | Path, run_cards: dict[str, dict[str, Any]],
                metrics: dict[str, dict[str, Any]] | None = None) -> str:
    """The README.md of the merged model.

    Args:
        merge: the merge card (``base_model``, ``base_model_path``, ``capabilities``, ``weights``,
            ``combination``, ``density``).
        folder: the output folder, as the loading snippet should name it.
        run_cards: each merged capability's run card (absent ones are left out).
        metrics: each capability's eval metrics, when the caller has them; else the card says where
            they are written.
    """
    names, base = merge["capabilities"], merge["base_model"]
    base_path = merge.get("base_model_path", base)
    methods = [run_cards[n]["method"] for n in names if n in run_cards]
    rows = ["| capability | weight | method | steps | train_loss | data files |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, weight in zip(names, merge["weights"], strict=True):
        card = run_cards.get(name, {})
        rows.append(f"| {name} | {weight} | {card.get('method', '?')} | {card.get('steps', '?')} | "
                    f"{card.get('train_loss', '?')} | {', '.join(f'`{f}`' for f in card.get('data_files', []))} |")
    if metrics:
        held = [f"- {name}: base {m.get('base')}, trained {m.get('trained')} (n={m.get('n')})"
                for name, m in metrics.items()]
    else:
        held = ["Each capability's held-out scores are in `reports/eval/<capability>/metrics.json` (the "
                "`eval@<capability>` stages); the `report` stage scores this merged model on every held-out "
                "split and writes `reports/scorecard/`."]
    density = f", density {merge['density']}" if merge.get("density") is not None else ""
    return "\n".join([
        _front_matter(base_path, "transformers", base_license(base_path), ["nexus", "merged", *names, *methods]),
        f"# merged: {', '.join(names)} on `{base}`", "",
        f"The capability adapters {', '.join(f'`{n}`' for n in names)} combined with PEFT's "
        f"`add_weighted_adapter` ({merge['combination']}{density}) and merged into the base weights: a plain "
        "transformers model. The combined LoRA adapter alone is in `adapter/merged/`.", "",
        _base_line(base, base_path), "",
        "## Capabilities", "", *rows, "",
        "## Held-out metrics", "", *held, "",
        "## Load it", "", load_snippet(folder, False, _FALLBACK_QUESTION), "",
    ])
