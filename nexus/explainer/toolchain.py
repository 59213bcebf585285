"""The Remotion toolchain, run for real: ``tsc --noEmit``, the bundler, ``renderStill`` and ``renderMedia``.

:func:`ensure_toolchain` copies the template (``nexus/explainer/remotion``) into a workspace
(``build/remotion`` by default) and runs ``npm install`` from its lockfile there when the template
changed (a stamp file
says which one it installed); Node and chromium come from the machine (``make remotion-toolchain``
installs both with apt where missing; ``NEXUS_CHROMIUM`` names another browser). Remotion would
download its own headless browser otherwise, which fails offline, so chromium is always passed as
``browserExecutable``. Remotion has its own license (free for individuals and small companies;
https://remotion.dev/license): docs/generation.md says so.

:func:`check_compositions` writes each composition as ``src/<run>/<id>.tsx`` of the workspace,
type-checks them all in one ``tsc`` run (errors are told apart by file; the kit is copied beside
them, so a composition imports ``./kit`` here as in the project ``nexus explain`` writes), and bundles and renders a
still (the middle frame) of each one that type-checks. :func:`render_video` renders a whole one to MP4.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent / "remotion"
WORKSPACE = Path("build/remotion")
TEMPLATE_FILES = ("package.json", "package-lock.json", "tsconfig.json", "check.mjs", "render.mjs",
                  "root.template.tsx", "src/kit.tsx")
STAMP = ".nexus-toolchain.json"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SETUP_HINT = "run make remotion-toolchain (installs Node and chromium with apt where missing, then the npm packages)"
_TSC_ERROR = re.compile(r"^src/[\w.-]+/(?:root-)?(?P<id>[\w-]+)\.tsx\(\d+,\d+\): error (?P<message>TS\d+: .*)$")


class ToolchainError(RuntimeError):
    """The toolchain cannot run here: the message names what is missing and what to run."""


@dataclass(frozen=True)
class Toolchain:
    """An installed workspace and the browser Remotion renders with."""

    workspace: Path
    browser: str
    node: str


def _stamp() -> str:
    digest = hashlib.sha256()
    for name in TEMPLATE_FILES:
        digest.update(name.encode() + b"\0" + (TEMPLATE / name).read_bytes())
    return digest.hexdigest()


def find_browser() -> str:
    """The chromium (or Chrome) executable: ``NEXUS_CHROMIUM``, else the first of :data:`BROWSERS` on PATH.

    Raises:
        ToolchainError: none found.
    """
    named = os.environ.get("NEXUS_CHROMIUM")
    if named:
        if not Path(named).is_file():
            raise ToolchainError(f"NEXUS_CHROMIUM={named}: no such file")
        return named
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        raise ToolchainError(f"no chromium on PATH (looked for {', '.join(BROWSERS)}); {SETUP_HINT}")
    return found


def _run(command: list[str], cwd: Path, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise ToolchainError(f"{what} did not finish in {timeout:.0f} s") from err


def ensure_toolchain(workspace: str | Path | None = None) -> Toolchain:
    """The workspace (``NEXUS_REMOTION_WORKSPACE``, else ``build/remotion``), installed from the template
    (``npm install`` when its stamp is not this template's).

    Raises:
        ToolchainError: no Node, npm or chromium, or ``npm install`` failed (its first error is named).
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise ToolchainError(f"no Node.js (node and npm on PATH; Remotion needs Node 18 or newer); {SETUP_HINT}")
    browser = find_browser()
    root = Path(workspace or os.environ.get("NEXUS_REMOTION_WORKSPACE") or WORKSPACE).resolve()
    stamp = _stamp()
    marker = root / STAMP
    if not marker.is_file() or json.loads(marker.read_text(encoding="utf-8")).get("template") != stamp:
        (root / "src").mkdir(parents=True, exist_ok=True)
        for name in TEMPLATE_FILES:
            shutil.copyfile(TEMPLATE / name, root / name)
        # npm install from the copied lockfile, not npm ci: npm 11 writes only this platform's optional
        # @remotion/compositor-* entries into the lockfile and npm ci then refuses it as out of sync
        done = _run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], root, 900, "npm install")
        if done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout).splitlines() if "npm error" in line] or ["no output"]
            raise ToolchainError(f"npm install in {root} failed: {lines[0]}; check the network to the npm registry")
        marker.write_text(json.dumps({"template": stamp}) + "\n", encoding="utf-8")
    return Toolchain(root, browser, node)


def extract_code(reply: str) -> str:
    """The TSX of a reply: the first fenced block (```tsx ... ```) when there is one, else the reply."""
    fenced = re.search(r"```(?:tsx|typescript|ts|jsx)?\s*\n(.*?)```", reply, re.DOTALL)
    return (fenced.group(1) if fenced else reply).strip() + "\n"


def _new_run(toolchain: Toolchain, prefix: str) -> Path:
    """A fresh folder under the workspace's ``src/`` with the kit beside the compositions (they import ``./kit``)."""
    run = Path(tempfile.mkdtemp(prefix=prefix, dir=toolchain.workspace / "src"))
    shutil.copyfile(toolchain.workspace / "src" / "kit.tsx", run / "kit.tsx")
    return run


def _root_for(toolchain: Toolchain, run: Path, name: str) -> Path:
    template = (toolchain.workspace / "root.template.tsx").read_text(encoding="utf-8")
    root = run / f"root-{name}.tsx"
    root.write_text(template.replace("./__COMPOSITION__", f"./{name}"), encoding="utf-8")
    return root


def _type_errors(toolchain: Toolchain, run: Path) -> dict[str, str]:
    """``{id: first tsc error}`` for the compositions under ``run``, each checked with its root (so a
    composition that does not export ``Explainer`` and ``durationInFrames`` fails here too).

    tsc reports no semantic error of any file while one has a syntax error, so it runs again without
    the files that failed, until a run finds nothing new (two runs when some file does not parse).
    """
    errors: dict[str, str] = {}
    config = run / "tsconfig.json"  # only this run's files (and the kit beside them)
    tsc = str(toolchain.workspace / "node_modules" / "typescript" / "bin" / "tsc")
    while True:
        excluded = [pattern for name in errors for pattern in (f"./{name}.tsx", f"./root-{name}.tsx")]
        config.write_text(json.dumps({"extends": "../../tsconfig.json", "include": ["./*.tsx"],
                                      "exclude": excluded}), encoding="utf-8")
        done = _run([toolchain.node, tsc, "--noEmit", "-p", str(config.relative_to(toolchain.workspace))],
                    toolchain.workspace, 300, "tsc")
        found: dict[str, str] = {}
        for line in done.stdout.splitlines():
            match = _TSC_ERROR.match(line.strip())
            if match and match["id"] not in errors:
                found.setdefault(match["id"], match["message"])
        if not found:
            return errors
        errors.update(found)


def type_check(toolchain: Toolchain, source: str) -> str | None:
    """The first tsc error of one composition (checked with its root), or None when it type-checks."""
    run = _new_run(toolchain, "tsc-")
    try:
        (run / "c000.tsx").write_text(source, encoding="utf-8")
        _root_for(toolchain, run, "c000")
        return _type_errors(toolchain, run).get("c000")
    finally:
        shutil.rmtree(run, ignore_errors=True)


def check_compositions(toolchain: Toolchain, sources: list[str], out_dir: str | Path) -> list[dict[str, Any]]:
    """Type-check, bundle and render a still of each composition (TSX source); the stills are written
    as ``<out_dir>/<n>.png``.

    Returns:
        Per source, in order: ``{"typechecks", "bundles", "renders"}`` (each True only when the ones
        before passed), ``"png"`` when rendered, and ``"error"`` (the first one) otherwise.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _new_run(toolchain, "run-")
    try:
        names = [f"c{n:03d}" for n in range(len(sources))]
        for name, source in zip(names, sources, strict=True):
            (run / f"{name}.tsx").write_text(source, encoding="utf-8")
        all_roots = {name: str(_root_for(toolchain, run, name)) for name in names}
        errors = _type_errors(toolchain, run)
        roots = {name: root for name, root in all_roots.items() if name not in errors}
        rendered: dict[str, Any] = {}
        if roots:
            (run / "roots.json").write_text(json.dumps(roots), encoding="utf-8")
            done = _run([toolchain.node, "check.mjs", str(run / "roots.json"), str(run), toolchain.browser],
                        toolchain.workspace, 120 + 60 * len(roots), "the Remotion check")
            if not (run / "results.json").is_file():
                raise ToolchainError(f"check.mjs wrote no results: {(done.stderr or done.stdout).strip()[-300:]}")
            rendered = json.loads((run / "results.json").read_text(encoding="utf-8"))
        results = []
        for number, name in enumerate(names):
            got = rendered.get(name, {})
            result: dict[str, Any] = {"typechecks": name not in errors, "bundles": bool(got.get("bundle")),
                                      "renders": bool(got.get("render"))}
            if result["renders"]:
                png = out / f"{number:03d}.png"
                shutil.copyfile(got["png"], png)
                result["png"] = str(png)
            else:
                result["error"] = errors.get(name) or got.get("error", "")
            results.append(result)
        return results
    finally:
        shutil.rmtree(run, ignore_errors=True)


def render_video(toolchain: Toolchain, source: str, out_mp4: str | Path) -> Path:
    """Render the whole composition ``source`` to an H.264 MP4 (written to a temporary name, then renamed).

    Raises:
        ToolchainError: it does not bundle or render (the first line of the error is named).
    """
    out = Path(out_mp4).resolve()
    run = _new_run(toolchain, "render-")
    tmp = out.with_name(f".{out.name}.tmp.mp4")
    try:
        (run / "explainer.tsx").write_text(source, encoding="utf-8")
        root = _root_for(toolchain, run, "explainer")
        done = _run([toolchain.node, "render.mjs", str(root), str(tmp), toolchain.browser], toolchain.workspace,
                    900, "renderMedia")
        if done.returncode != 0 or not tmp.is_file():
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            raise ToolchainError(f"the composition does not render: {(lines or ['no output'])[0][:300]}")
        os.replace(tmp, out)
        return out
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(run, ignore_errors=True)


def main() -> int:
    """``python -m nexus.explainer.toolchain``: install the workspace (``make remotion-toolchain``) and say
    where it is; exit 1 with the missing piece named."""
    import sys

    try:
        toolchain = ensure_toolchain()
    except ToolchainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"remotion toolchain: {toolchain.workspace} (node {toolchain.node}, browser {toolchain.browser})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
