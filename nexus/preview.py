"""``nexus organize --preview``: what each capability will train on, before any training.

For every implemented capability with data it prints how many records were kept and dropped (with
the reasons: formatter rejections, exact duplicates, examples longer than ``max_length``), and two
formatted training examples rendered through the model's chat template with the loss mask visible:
text between ``[[`` and ``]]`` is trained on (the completion); the rest is context with no loss, as
TRL's prompt-completion training masks it.
"""

from __future__ import annotations

from typing import Any

from nexus import paths, registry
from nexus.chat import token_ids
from nexus.config import Params
from nexus.examples import NoDataError
from nexus.loading import load_tokenizer
from nexus.prepare import build_split

TRAINED_OPEN, TRAINED_CLOSE = "[[", "]]"


def masked_rendering(example: dict[str, Any], tokenizer: Any) -> str:
    """The full chat rendering with the trained span (completion tokens) between ``[[`` and ``]]``."""
    prompt_ids = token_ids(example, tokenizer, with_completion=False)
    full_ids = token_ids(example, tokenizer)
    context = tokenizer.decode(full_ids[:len(prompt_ids)])
    trained = tokenizer.decode(full_ids[len(prompt_ids):])
    return f"{context}{TRAINED_OPEN}{trained}{TRAINED_CLOSE}"


def preview(params: Params, samples: int = 2, organized_dir: Any = paths.ORGANIZED_DIR) -> str:
    """The preview text for every capability in params.yaml: the split the prepare stage would
    write (:func:`nexus.prepare.build_split`), built in memory."""
    tokenizer = load_tokenizer(params.base.model)
    out = [f"Preview ({TRAINED_OPEN}...{TRAINED_CLOSE} is trained on; the rest is context without loss)"]
    for name in params.capabilities:
        if not registry.CAPABILITIES[name].implemented:
            continue
        try:
            split = build_split(name, params, organized_dir, tokenizer)
        except NoDataError as err:
            out += ["", f"== {name}: no data ({err})"]
            continue
        dropped = split.dropped
        out += ["", f"== {name}: {len(split.train)} training examples, {len(split.eval)} held out for eval, "
                    f"{sum(dropped.values())} dropped"]
        out += [f"   dropped {n}: {reason}" for reason, n in sorted(dropped.items(), key=lambda kv: -kv[1])]
        for i, example in enumerate(split.train[:samples], 1):
            out += [f"-- {name} example {i}", masked_rendering(example, tokenizer)]
    return "\n".join(out)
