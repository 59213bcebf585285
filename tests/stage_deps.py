"""What each DVC stage really reads of the project's code: the import closure of its command.

A stage's command runs ``python stages/<script>.py``; the script calls ``nexus.cli.main([verb, ...])``
(or imports nexus modules itself). The closure starts at the script, follows every ``import`` of
``nexus`` modules in every file it reaches (module level and function level: a function-level
import is a real edge), and, in ``nexus/cli.py``, only the module level plus the verb's handler
``_cmd_<verb>``, ``main`` and the cli functions they call. Dynamic imports are resolved by rule: a stage of a
capability (``train@cot``) loads that capability's module, any other stage every capability module.

    python -m tests.stage_deps            # print each stage's closure and what dvc.yaml misses
    python -m tests.stage_deps --deps     # also the closure written as dvc.yaml deps
    python -m tests.stage_deps --write    # rewrite dvc.yaml's code deps from the closures
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "nexus"
CLI = Path("nexus/cli.py")
CAPABILITIES = Path("nexus/capabilities")


def module_file(module: str) -> Path | None:
    """The project file of a dotted ``nexus`` module (package ``__init__.py`` or module file)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = Path(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def _with_parents(module: str) -> list[Path]:
    """The module's file and its parent packages' ``__init__.py`` (importing runs them all)."""
    parts = module.split(".")
    found = [module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    return [f for f in found if f is not None]


def _imports_in(nodes: list[ast.AST]) -> set[Path]:
    """Project files imported anywhere inside ``nodes``."""
    out: set[Path] = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.update(_with_parents(alias.name))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.update(_with_parents(node.module))
            for alias in node.names:  # `from nexus import capabilities` imports a submodule
                sub = module_file(f"{node.module}.{alias.name}")
                if sub is not None:
                    out.add(sub)
    return out


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse((ROOT / path).read_text(encoding="utf-8"), str(path))


def file_imports(path: Path) -> set[Path]:
    """Every project file ``path`` imports, at module level or inside functions."""
    return _imports_in([_tree(path)])


def cli_imports(verb: str) -> set[Path]:
    """What ``nexus.cli.main([verb, ...])`` imports: the module level, ``main``, the verb's handler
    and the cli functions they call (transitively)."""
    tree = _tree(CLI)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    top = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.ClassDef)]
    handler = f"_cmd_{verb.replace('-', '_')}"
    if handler not in functions:
        raise KeyError(f"{CLI}: no handler {handler} for verb '{verb}'")
    seen, todo = set(), [handler, "main"]  # main (and the parser it builds) runs for every verb
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(functions[name]):
            other_verb = node.id.startswith("_cmd_") and node.id != handler if isinstance(node, ast.Name) else True
            if isinstance(node, ast.Name) and node.id in functions and not other_verb:
                todo.append(node.id)  # build_parser names every handler; only this verb's runs
    return _imports_in(top + [functions[n] for n in seen])


def script_verb(script: Path) -> str | None:
    """The verb a stage script passes to ``nexus.cli.main`` (``main(["train", ...])``), if any."""
    for node in ast.walk(_tree(script)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "main" and node.args:
            first = node.args[0]
            if isinstance(first, ast.List) and first.elts and isinstance(first.elts[0], ast.Constant):
                return str(first.elts[0].value)
    return None


def _dynamic(path: Path, capability: str | None) -> set[Path]:
    """Modules a file loads by name at run time (see the module docstring)."""
    if path == CAPABILITIES / "__init__.py":
        names = [capability] if capability else [p.stem for p in (ROOT / CAPABILITIES).glob("*.py")]
        return {CAPABILITIES / f"{n}.py" for n in names if (ROOT / CAPABILITIES / f"{n}.py").is_file()}
    return set()


def closure(script: Path, capability: str | None = None) -> set[Path]:
    """Every project file the stage script ``script`` runs, for the stage of ``capability``."""
    verb = script_verb(script)
    todo = set(cli_imports(verb)) | {CLI} if verb else set(file_imports(script))
    done: set[Path] = {script}
    while todo:
        path = todo.pop()
        if path in done:
            continue
        done.add(path)
        follow = cli_imports(verb) if path == CLI and verb else file_imports(path)
        todo |= (follow | _dynamic(path, capability)) - done
    return done


def stage_deps() -> dict[str, tuple[Path, set[Path], set[Path]]]:
    """Per resolved DVC stage: its script, its closure, and its declared project-code deps."""
    from dvc.repo import Repo

    out: dict[str, tuple[Path, set[Path], set[Path]]] = {}
    with Repo(str(ROOT)) as repo:
        for stage in repo.index.stages:
            words = stage.cmd.split() if isinstance(stage.cmd, str) else " ".join(stage.cmd).split()
            script = next((Path(w) for w in words if w.startswith("stages/") and w.endswith(".py")), None)
            if script is None:
                continue
            capability = stage.name.split("@", 1)[1] if "@" in stage.name else None
            declared = {Path(dep.def_path) for dep in stage.deps}
            out[stage.name] = (script, closure(script, capability), declared)
    return out


def covered(path: Path, declared: set[Path]) -> bool:
    """True when ``path`` is a declared dep or lies under a declared folder."""
    return any(path == d or d in path.parents for d in declared)


def minimal_deps(files: set[Path]) -> list[str]:
    """The closure written as dvc.yaml deps: a package folder when the closure holds all of its
    files, else the files."""
    out: set[str] = set()
    for path in files:
        folder = path.parent
        whole = folder != Path(PACKAGE) and all(
            p.relative_to(ROOT) in files for p in (ROOT / folder).glob("*.py"))
        out.add(str(folder) if whole else str(path))
    return sorted(out)


def _template_deps(name: str, members: dict[str, tuple[Path, set[Path], set[Path]]]) -> list[str]:
    """The code deps of a stage (or of a foreach group: the union over its members, each member's
    own capability module written as ``nexus/capabilities/${key}.py``)."""
    files: set[Path] = set()
    own: set[Path] = set()
    for member, (_, closure_files, _) in members.items():
        files |= closure_files
        if "@" in member:
            own.add(CAPABILITIES / f"{member.split('@', 1)[1]}.py")
    script = next(iter(members.values()))[0]
    deps = [str(script), *(d for d in minimal_deps(files - own - {script}))]
    return deps + ([f"{CAPABILITIES}/${{key}}.py"] if own else [])


def write_deps(path: Path = ROOT / "dvc.yaml") -> None:
    """Rewrite the project-code deps (``stages/``, ``nexus/``) of every stage in dvc.yaml from the
    import closures, keeping every other dep, key and comment."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    doc = yaml.load(path.read_text(encoding="utf-8"))
    resolved = stage_deps()
    for name, body in doc["stages"].items():
        target = body.get("do", body)
        members = {k: v for k, v in resolved.items() if k == name or k.startswith(f"{name}@")}
        if not members:
            continue
        kept = [d for d in target["deps"] if not str(d).startswith(("nexus/", "stages/"))]
        target["deps"] = kept + _template_deps(name, members)
    with path.open("w", encoding="utf-8") as f:
        yaml.dump(doc, f)


def main(argv: list[str]) -> int:
    """Print each stage's closure and the project files its dvc.yaml entry misses
    (``--deps``: the closure as dvc.yaml deps; ``--write``: rewrite dvc.yaml's code deps)."""
    if "--write" in argv:
        write_deps()
    bad = 0
    for name, (script, files, declared) in stage_deps().items():
        missing = sorted(str(f) for f in files if not covered(f, declared))
        bad += bool(missing)
        print(f"{name} ({script}): {len(files)} files; missing: {', '.join(missing) or 'none'}")
        if "--deps" in argv:
            print("".join(f"  - {dep}\n" for dep in minimal_deps(files)), end="")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
