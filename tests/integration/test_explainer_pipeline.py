"""remotion_explainer with the real toolchain: TypeScript, Remotion's bundler and chromium.

The toolchain is the pinned one ``make remotion-toolchain`` installs (``make test`` runs it first):
Node, chromium and the npm packages of ``nexus/explainer/remotion/package-lock.json`` in
``build/remotion``. Checked here: every project-written sample composition type-checks, broken ones
fail at the stage they break with the error named, ``nexus explain --composition`` writes a project
and a real MP4, and the capability trains (a tiny random Llama, two steps) and is scored by the
toolchain on its 8 held-out topics.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from nexus.cli import main
from nexus.explainer.toolchain import ToolchainError, check_compositions, ensure_toolchain, extract_code
from tests.project import ROOT

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")
SAMPLES = ROOT / "data" / "samples" / "remotion_explainer"
WORKSPACE = ROOT / "build" / "remotion"


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory: pytest.TempPathFactory):
    try:
        return ensure_toolchain(WORKSPACE)
    except ToolchainError as err:  # make test installs it; a machine without Node or chromium cannot
        pytest.skip(f"no Remotion toolchain here ({err})")


@pytest.fixture
def workspace_env(toolchain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_REMOTION_WORKSPACE", str(toolchain.workspace))


SHORT = """import React from "react";
import {AbsoluteFill, Sequence} from "remotion";
import {BarChart, Title} from "./kit";

export const durationInFrames = 40;

export const Explainer: React.FC = () => (
  <AbsoluteFill style={{backgroundColor: "#1c1c28"}}>
    <Sequence durationInFrames={20}>
      <Title text="The Fibonacci sequence" subtitle="Each number sums the two before" />
    </Sequence>
    <Sequence from={20} durationInFrames={20}>
      <BarChart labels={["F5", "F6", "F7", "F8"]} values={[5, 8, 13, 21]} />
    </Sequence>
  </AbsoluteFill>
);
"""


def _records() -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / "explainers.jsonl").read_text(encoding="utf-8").splitlines()]


def test_every_sample_type_checks_and_broken_ones_fail_where_they_break(toolchain, tmp_path: Path) -> None:
    from nexus.explainer.toolchain import _new_run, _root_for, _type_errors

    records = _records()
    run = _new_run(toolchain, "samples-")
    try:
        for number, record in enumerate(records):
            (run / f"c{number:03d}.tsx").write_text(record["composition"], encoding="utf-8")
            _root_for(toolchain, run, f"c{number:03d}")  # the root imports its two exports
        assert _type_errors(toolchain, run) == {}  # all 56, in strict mode
    finally:
        shutil.rmtree(run)
    good = records[1]["composition"]
    unimported = good.replace("import {BarChart, ", "import {")
    throws = good.replace('<Bullets items={', '<Bullets items={(null as any).items ?? ')
    results = check_compositions(toolchain, ["not code at all", unimported, throws, ""], tmp_path)
    assert [(r["typechecks"], r["bundles"], r["renders"]) for r in results] == [
        (False, False, False), (False, False, False), (True, True, False), (False, False, False)]
    assert results[0]["error"].startswith("TS1434") and "Cannot find name 'BarChart'" in results[1]["error"]
    assert "is not a module" in results[3]["error"]  # an empty reply is no composition (its root says so)
    assert "Cannot read properties of null" in results[2]["error"] and not list(tmp_path.glob("*.png"))


def test_explain_writes_a_project_and_a_real_mp4(workspace_env, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from nexus.multimodal.media import load_video

    composition = tmp_path / "fib.tsx"  # a short one (written here): rendering every frame is the slow part
    composition.write_text(SHORT, encoding="utf-8")
    assert main(["explain", "the Fibonacci sequence", "--composition", str(composition), "--out",
                 str(tmp_path / "fib")]) == 0
    out = tmp_path / "fib"
    assert "renders ->" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["check.json", "explainer.mp4", "package-lock.json",
                                                      "package.json", "render.mjs", "src", "tsconfig.json"]
    assert json.loads((out / "check.json").read_text()) == {"typechecks": True, "renders": True}
    frames = load_video(str(out / "explainer.mp4"), 4)
    assert len(frames) == 4 and frames[0].size == (640, 360)
    assert np.asarray(frames[2].convert("L")).std() > 5  # drawn, not a blank frame
    assert sorted(p.name for p in (out / "src").iterdir()) == ["Explainer.tsx", "index.tsx", "kit.tsx"]

    broken = tmp_path / "broken.tsx"
    broken.write_text("export const Explainer = () => <Nope />;\nexport const durationInFrames = 30;\n")
    assert main(["explain", "x", "--composition", str(broken), "--out", str(tmp_path / "broken")]) == 1
    assert "does not render (TS2304: Cannot find name 'Nope'.)" in capsys.readouterr().err
    assert (tmp_path / "broken" / "src" / "Explainer.tsx").is_file()
    assert not (tmp_path / "broken" / "explainer.mp4").exists()
    assert main(["explain", "", "--out", str(tmp_path / "none"), "--model", str(tmp_path / "nothing")]) == 1
    assert "topic: empty" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_extract_code_takes_the_fenced_block() -> None:
    assert extract_code("Here:\n```tsx\nconst a = 1;\n```\nDone.") == "const a = 1;\n"
    assert extract_code("const b = 2;") == "const b = 2;\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("explainer")
    shutil.copytree(SAMPLES, root / "data" / "remotion_explainer")
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["base"]["model"] = str(tiny_model_dir)
    data["organize"]["sources"] = [str(root / "data")]
    entry = data["parked"].pop("remotion_explainer")
    entry.update(init_from=str(tiny_model_dir), max_steps=2, batch_size=1, max_new_tokens=12)
    data["capabilities"] = {"remotion_explainer": entry}
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def test_trains_and_is_scored_by_the_toolchain_on_held_out_topics(project: Path, workspace_env,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    assert main(["organize", "--params", "params.yaml", "--out", "organized"]) == 0
    catalog = json.loads((project / "organized" / "catalog.json").read_text())
    routed = [f for f in catalog["files"] if f["path"].endswith("explainers.jsonl")]
    assert routed and routed[0]["capabilities"] == ["remotion_explainer"] and routed[0]["format"] == "explainer_code"
    assert main(["detect", "--params", "params.yaml", "--out", "modality.json"]) == 0
    assert main(["train", "--params", "params.yaml", "--capability", "remotion_explainer", "--out", "out/rx",
                 "--data", "organized", "--modality", "modality.json"]) == 0
    card = json.loads((project / "out" / "rx" / "run_card.json").read_text())
    assert card["train_examples"] == 48 and card["eval_examples"] == 8  # the split: test topics held out
    assert main(["eval", "--params", "params.yaml", "--capability", "remotion_explainer", "--model", "out/rx",
                 "--data", "organized"]) == 0
    metrics = json.loads((project / "reports" / "eval" / "remotion_explainer" / "metrics.json").read_text())
    assert metrics["n"] == 8
    for which in ("base", "trained"):  # 12 tokens of a random model: no composition type-checks
        assert metrics[which] == {"typechecks": 0.0, "bundles": 0.0, "renders": 0.0, "on_topic": 0.0}
    rows = [json.loads(line) for line in
            (project / "reports" / "eval" / "remotion_explainer" / "predictions.jsonl").read_text().splitlines()]
    held = {r["prompt"] for r in _records() if r["split"] == "test"}
    assert {row["prompt"] for row in rows} == held and "Write a Remotion explainer video about entropy." in held
