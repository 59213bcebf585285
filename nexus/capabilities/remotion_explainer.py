"""remotion_explainer: a topic in, a 3Blue1Brown-style explainer as a Remotion composition (TSX) out.

The model learns to write a composition that imports the project's scene kit (Title, Bullets,
Equation, BarChart, NumberLine: ``nexus/explainer/remotion/src/kit.tsx``) and Remotion itself,
exports ``durationInFrames`` and an ``Explainer`` component of ``<Sequence>`` scenes. What it writes is
checked with the real toolchain (:mod:`nexus.explainer.toolchain`: TypeScript, Remotion's bundler, a
still rendered in chromium).

Accepted formats (detected by the organizer, see :mod:`nexus.formats`):

- ``explainer_code``: ``{"topic": "prime numbers", "composition": "<TSX>", "prompt": "Write a Remotion
  explainer video about prime numbers.", "split": "train"}`` (``prompt`` optional: the default asks
  for the topic as above; ``split`` as for the generation capabilities: ``test`` holds a topic out).

Scoring (``generate`` writes each held-out topic's composition with the shared greedy generation,
then runs the toolchain on all of them at once): ``typechecks`` (``tsc --noEmit`` in strict mode),
``bundles`` and ``renders`` (a still of the middle frame, written as a PNG under the eval report's
``samples/``), each 1 only when the ones before passed; ``on_topic`` is 1 when the composition's
first ``text="..."`` (its title) shares a word of four letters or more with the topic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nexus.capabilities import Example, SkipRecord
from nexus.capabilities._generation import held_out

METRIC = "renders"
PROMPT = "Write a Remotion explainer video about {topic}."
SCORES = ("typechecks", "bundles", "renders", "on_topic")
__all__ = ["FORMATTERS", "METRIC", "format_explainer", "generate", "held_out", "score"]
_TITLE = re.compile(r"text=\"([^\"]*)\"")
_WORD = re.compile(r"[a-z]{4,}")


def format_explainer(record: dict[str, Any]) -> Example:
    """``explainer_code`` record -> the topic's request as the prompt, the composition as the reply.

    Raises:
        SkipRecord: no topic, or a composition that exports no ``Explainer``.
    """
    topic, code = str(record.get("topic") or "").strip(), str(record.get("composition") or "")
    if not topic:
        raise SkipRecord("no topic")
    if "export const Explainer" not in code:
        raise SkipRecord("the composition exports no Explainer component")
    prompt = str(record.get("prompt") or PROMPT.format(topic=topic))
    example: Example = {"prompt": [{"role": "user", "content": prompt}],
                        "completion": [{"role": "assistant", "content": code}], "reference": code}
    if record.get("split"):
        example["group"] = f"split:{str(record['split']).lower()}"
    return example


FORMATTERS = {"explainer_code": format_explainer}


def topic_of(example: Example) -> str:
    """The topic a prompt asks about (the text after "about", without the final period)."""
    text = str(example["prompt"][-1]["content"])
    return text.split(" about ", 1)[-1].rstrip(". ")


def on_topic(code: str, topic: str) -> bool:
    """Whether the composition's title shares a word (four letters or more) with ``topic``."""
    title = _TITLE.search(code)
    return bool(title) and bool(set(_WORD.findall(title.group(1).lower())) & set(_WORD.findall(topic.lower())))


def generate(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int,
             media_dir: Path | None = None) -> list[str]:
    """Write each held-out topic's composition, then type-check, bundle and render all of them; the
    replies carry ``metrics`` (:data:`SCORES`), the stills go to ``<media_dir>/<n>.png``."""
    import tempfile

    from nexus.explainer.toolchain import check_compositions, ensure_toolchain, extract_code
    from nexus.generation.batch import generate_examples
    from nexus.generation.stream import StreamedText

    replies = generate_examples(model, tokenizer, examples, max_new_tokens)
    toolchain = ensure_toolchain()  # before the checks: a missing toolchain fails the stage, naming the fix
    codes = [extract_code(reply) for reply in replies]
    folder = Path(media_dir) if media_dir is not None else Path(tempfile.mkdtemp(prefix="nexus-stills-"))
    checked = check_compositions(toolchain, codes, folder)
    return [StreamedText(reply, {**{key: float(result[key]) for key in SCORES[:3]},
                                 "on_topic": float(on_topic(code, topic_of(example)))})
            for reply, code, result, example in zip(replies, codes, checked, examples, strict=True)]


def score(generated: str, example: Example) -> dict[str, float]:
    """The toolchain's ``typechecks``, ``bundles``, ``renders`` and ``on_topic`` as :func:`generate` measured them."""
    metrics = getattr(generated, "metrics", None) or {}
    return {key: float(metrics[key]) for key in SCORES if key in metrics}
