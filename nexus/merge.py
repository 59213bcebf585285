"""One model out of many capabilities: PEFT's weighted adapter merging.

The ``merge`` stage loads the base model with every capability adapter named in ``merge:`` of
params.yaml, combines them with ``PeftModel.add_weighted_adapter`` (``combination`` is PEFT's
``combination_type``: cat, linear, svd, ties, dare_ties, ...), and writes ``models/merged``:

- the combined weights merged into the base: a plain HF model folder that
  ``AutoModelForCausalLM.from_pretrained("models/merged")`` loads without Nexus;
- ``adapter/merged/``: the combined LoRA adapter alone, for PEFT users
  (``PeftModel.from_pretrained(base, "models/merged/adapter/merged")``);
- ``merge_card.json``: which adapters, weights and method made it;
- ``README.md``: the model card (:func:`nexus.model_card.merged_card`): base, capabilities with
  their weights, methods, steps and data files, where the held-out metrics are, and how to load it.
  The merge stage does not depend on ``reports/eval`` in dvc.yaml, so the card points at the eval
  and report outputs instead of copying figures that could be stale or not written yet.

The adapter's ``base_model_name_or_path`` is the base folder's absolute path (a Hub id as is), so
it loads from any working directory; the card and ``merge_card.json`` keep the project-relative name.

Capabilities trained in a chain (``init_from: models/capabilities/<other>``) are already one
model: their output folder is a full model, and merging them again is refused.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COMBINATIONS = ("cat", "linear", "svd", "ties", "ties_svd", "dare_ties", "dare_linear", "dare_ties_svd",
                "dare_linear_svd", "magnitude_prune", "magnitude_prune_svd")
_NEEDS_DENSITY = ("ties", "ties_svd", "dare_ties", "dare_linear", "dare_ties_svd", "dare_linear_svd",
                  "magnitude_prune", "magnitude_prune_svd")
MERGED_ADAPTER = "merged"


class MergeError(ValueError):
    """The adapters cannot be merged as params.yaml asks."""


def merged_capabilities(params: Any, models_dir: Path) -> list[str]:
    """``merge.capabilities``, or when empty every capability trained from the base with a LoRA
    adapter found in ``models_dir``."""
    if params.merge.capabilities:
        return list(params.merge.capabilities)
    return [name for name, cap in params.capabilities.items()
            if cap.adapter == "lora" and cap.init_from == params.base.model
            and (models_dir / name / "adapter_config.json").is_file()]


def write_nothing_merged(out_dir: str | Path, selected: list[str]) -> Path:
    """``out_dir`` holding only a merge card and a README saying nothing was merged (no capability
    under ``capabilities:`` has a LoRA adapter on the base: multimodal composites, full models), so
    the DAG's ``models/merged`` exists and the scorecard has no merged row."""
    from nexus.atomic import atomic_dir, write_json_atomic, write_text_atomic

    why = (f"no LoRA adapter on the base among {', '.join(selected) or 'the selected capabilities'}: "
           f"merge combines text capabilities' adapters (multimodal outputs are whole composites)")
    with atomic_dir(Path(out_dir)) as tmp:
        write_json_atomic({"capabilities": [], "note": why}, tmp / "merge_card.json")
        write_text_atomic(f"# Nothing merged\n\n{why}.\n", tmp / "README.md")
    log.info("merge: nothing to merge (%s)", why)
    return Path(out_dir)


def adapter_dirs(capabilities: list[str], models_dir: Path) -> dict[str, Path]:
    """The adapter folder of each capability, checked to be a LoRA adapter.

    Raises:
        MergeError: a capability is not trained yet, or its output is a full model.
    """
    found: dict[str, Path] = {}
    for name in capabilities:
        folder = models_dir / name
        if not (folder / "adapter_config.json").is_file():
            what = "a full model (adapter: full or init_from chaining)" if (folder / "config.json").is_file() \
                else "not trained yet"
            raise MergeError(
                f"{folder}: {what}; merge combines LoRA adapters only: train it with adapter: lora, "
                f"or remove '{name}' from merge.capabilities in params.yaml"
            )
        found[name] = folder
    return found


def merge_adapters(base_model: str | Path, adapters: dict[str, Path], out_dir: str | Path,
                   combination: str = "cat", weights: list[float] | None = None,
                   density: float = 0.5) -> dict[str, Any]:
    """Combine ``adapters`` (name -> folder) on ``base_model`` and write ``out_dir``.

    Returns:
        The merge card written to ``<out_dir>/merge_card.json``.

    Raises:
        MergeError: unknown combination, wrong number of weights, or no adapter.
    """
    if combination not in COMBINATIONS:
        raise MergeError(f"merge.combination: '{combination}' is not one of {', '.join(COMBINATIONS)}")
    if not adapters:
        raise MergeError("merge.capabilities is empty: name the capabilities to merge in params.yaml")
    names = list(adapters)
    weights = list(weights) if weights else [1.0] * len(names)
    if len(weights) != len(names):
        raise MergeError(f"merge.weights has {len(weights)} values for {len(names)} capabilities ({names})")
    from peft import PeftModel

    from nexus.atomic import atomic_dir, write_json_atomic, write_text_atomic
    from nexus.loading import load_model, load_tokenizer
    from nexus.model_card import CARD_FILE, merged_card, point_adapter_at_base, resolvable_base

    model = PeftModel.from_pretrained(load_model(base_model), str(adapters[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(adapters[name]), adapter_name=name)
    kwargs: dict[str, Any] = {"density": density} if combination in _NEEDS_DENSITY else {}
    model.add_weighted_adapter(names, weights, MERGED_ADAPTER, combination_type=combination, **kwargs)
    model.set_adapter(MERGED_ADAPTER)
    card = {"base_model": str(base_model), "base_model_path": resolvable_base(base_model), "capabilities": names,
            "weights": weights, "combination": combination, "density": kwargs.get("density")}
    readme = merged_card(card, Path(out_dir).resolve(), _run_cards(adapters))
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp / "adapter", selected_adapters=[MERGED_ADAPTER])
        point_adapter_at_base(tmp / "adapter" / MERGED_ADAPTER / "adapter_config.json", base_model)
        (tmp / "adapter" / CARD_FILE).unlink(missing_ok=True)  # PEFT's auto card; ours is one level up
        model.merge_and_unload(adapter_names=[MERGED_ADAPTER]).save_pretrained(tmp)
        load_tokenizer(base_model).save_pretrained(tmp)
        write_json_atomic(card, tmp / "merge_card.json")
        write_text_atomic(readme, tmp / CARD_FILE)
    log.info("merged %s (%s) into %s", names, card["combination"], out_dir)
    return card


def _run_cards(adapters: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Each adapter's run card (``run_card.json``, written by its train stage), where readable."""
    cards = {}
    for name, folder in adapters.items():
        try:
            cards[name] = json.loads((folder / "run_card.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s: no readable run_card.json; the merged model card lists it without figures", folder)
    return cards
