"""``nexus explain "topic" --out DIR``: the trained remotion_explainer model writes an explainer, and
the real toolchain renders it.

``DIR`` gets a Remotion project that stands on its own: ``package.json`` and ``package-lock.json``
(the pinned toolchain), ``tsconfig.json``, ``src/kit.tsx`` (the scene kit), ``src/Explainer.tsx`` (the
composition), ``src/index.tsx`` (its root), ``render.mjs``, ``check.json`` (whether it type-checks
and renders, and the first error) and ``explainer.mp4``. ``--composition FILE`` renders a composition you wrote or
edited instead of asking a model. The folder is written to a temporary name and renamed; when the
composition does not type-check or render, the project is still written (so it can be fixed) without
the MP4, and the command exits 1 naming the first error.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus.atomic import atomic_dir

DEFAULT_MODEL = "models/capabilities/remotion_explainer"
PROJECT_FILES = ("package.json", "package-lock.json", "tsconfig.json", "render.mjs", "src/kit.tsx")


class ExplainError(ValueError):
    """Bad input to ``nexus explain``, or a composition that does not render: the message says what to do."""


@dataclass(frozen=True)
class ExplainRequest:
    """What to explain and where (see :func:`explain`)."""

    topic: str
    out: Path
    model: str = DEFAULT_MODEL
    composition: Path | None = None
    max_new_tokens: int = 560


def write_composition(request: ExplainRequest) -> str:
    """The composition's TSX: ``--composition`` read as it is, else the model's reply to the topic (greedy).

    Raises:
        ExplainError: an empty topic, a missing composition file, or a model folder that does not exist.
    """
    if request.composition is not None:
        if not request.composition.is_file():
            raise ExplainError(f"--composition {request.composition}: no such file")
        return request.composition.read_text(encoding="utf-8")
    if not request.topic.strip():
        raise ExplainError("topic: empty; say what to explain, e.g. nexus explain \"prime numbers\" --out primes")
    if not Path(request.model).exists():
        raise ExplainError(f"--model {request.model}: no such model; train it (make train CAPS=remotion-explainer) "
                           "or pass --composition FILE")
    from nexus.capabilities.remotion_explainer import PROMPT
    from nexus.explainer.toolchain import extract_code
    from nexus.generation.batch import generate_examples
    from nexus.loading import load_model, load_tokenizer

    model, tokenizer = load_model(request.model), load_tokenizer(request.model)
    example = {"prompt": [{"role": "user", "content": PROMPT.format(topic=request.topic.strip())}]}
    return extract_code(generate_examples(model, tokenizer, [example], request.max_new_tokens)[0])


def explain(request: ExplainRequest) -> dict[str, Any]:
    """Write the project (and its MP4 when it renders) into ``request.out``.

    Returns:
        ``{"out", "check", "mp4"}``: the folder, the toolchain's results, the MP4 path or None.

    Raises:
        ExplainError: bad input (see :func:`write_composition`), or the composition does not render
            (raised after the project is written).
        ToolchainError: Node, chromium or the npm packages are missing.
    """
    from nexus.explainer.toolchain import TEMPLATE, ToolchainError, ensure_toolchain, render_video, type_check

    code = write_composition(request)
    toolchain = ensure_toolchain()
    with atomic_dir(request.out) as tmp:
        (tmp / "src").mkdir()
        for name in PROJECT_FILES:
            shutil.copyfile(TEMPLATE / name, tmp / name)
        (tmp / "src" / "Explainer.tsx").write_text(code, encoding="utf-8")
        root = (TEMPLATE / "root.template.tsx").read_text(encoding="utf-8").replace("./__COMPOSITION__", "./Explainer")
        (tmp / "src" / "index.tsx").write_text(root, encoding="utf-8")
        error = type_check(toolchain, code)
        check: dict[str, Any] = {"typechecks": error is None, "renders": False}
        mp4 = None
        if error is None:  # renderMedia bundles and renders every frame: a runtime error fails here
            try:
                mp4 = render_video(toolchain, code, tmp / "explainer.mp4")
                check["renders"] = True
            except ToolchainError as err:
                error = str(err)
        if error:
            check["error"] = error
        (tmp / "check.json").write_text(json.dumps(check, indent=2) + "\n", encoding="utf-8")
    if mp4 is None:
        why = check.get("error") or "no error text"
        raise ExplainError(f"{request.out}/src/Explainer.tsx does not render ({why}); "
                           f"the project is written without explainer.mp4: fix the composition and rerun with "
                           f"--composition {request.out}/src/Explainer.tsx")
    return {"out": str(request.out), "check": check, "mp4": str(request.out / "explainer.mp4")}
