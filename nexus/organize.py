"""The dataset organizer: find data files, detect their format, route them to capabilities.

``organize`` walks the source folders (:mod:`nexus.walk`), reads the first records of each data
file to detect its format (:mod:`nexus.formats`), reads every record once more to count it and
check it against its format's schema (:data:`RECORD_CHECK`), hashes the file, and writes, in one
atomic step, ``<out>/catalog.json`` and one ``<out>/<capability>/manifest.json`` per capability that
received files. A file goes to every capability that has a formatter for its detected format
(:func:`nexus.capabilities.formats_of`); a file no capability takes, or whose format is unknown, is
listed as unplaced with the reason. Nothing is guessed, and user files are never moved or edited,
except with ``move=True`` (the seed's behaviour), which moves placed files from ``data/raw`` into
``<out>/<capability>/``.

Every file is judged alone: a file that cannot be read as data (a FIFO, socket, device or folder;
a symlink that loops or leaves its data root; an unreadable file; binary or UTF-16 text; a broken,
too deeply nested or NaN-holding record; any other ``OSError``/``ValueError``/``RecursionError``/
``MemoryError`` while reading it) is listed as unplaced with a one-line reason, and the run goes on.
A record its format's schema refuses (a KTO label that is not a boolean, an unknown role, ...) is
counted as ``invalid`` with its number and reason in ``problems``; a file with no usable record is
unplaced (``no usable record: record 1: ...``), and manifests list only files with usable records.

Catalog (``catalog.json``)::

    {"files": [{"path", "format", "kind", "capabilities": [...], "records", "sha256",
                "status": "placed" | "unplaced", "why", "label", "usable", "invalid",
                "problems": ["record 7: ...", ...]}],
     "models": [{"path", "role", "modalities": [...], "model_type", "architectures", "source",
                 "why"}],
     "notes": [str]}

Manifest (``<capability>/manifest.json``)::

    {"capability": name, "files": [{"path", "format", "kind", "records", "usable", "invalid",
                                    "sha256"}], "method_files": [...], "preference_pairs": str}

No torch import: ``nexus plan`` and ``nexus organize`` use this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nexus import capabilities, formats, methods, modality, readers, record_checks, walk
from nexus.atomic import as_created
from nexus.registry import CAPABILITIES

CATALOG = "catalog.json"
MANIFEST = "manifest.json"
RAW_DIR = Path("data/raw")
# Errors that make one file unplaced, never the whole run (readers raise RecordError for what
# they recognize; these are the rest: I/O, decoding, a record too deep or too large for memory,
# a detection rule meeting a record of unexpected shape).
FILE_ERRORS = (OSError, ValueError, LookupError, TypeError, AttributeError, RecursionError, MemoryError)
# Kinds whose records point at media by relative path: moving the file alone would break them.
MEDIA_KINDS = frozenset({"image", "video", "audio", "video_audio", "image_caption", "video_caption"})


class OrganizeError(ValueError):
    """The organizer cannot run as asked (bad arguments, or it would destroy user files)."""


@dataclass
class FileEntry:
    """One data file in the catalog.

    Attributes:
        path: the file's path as found (relative to the cwd when the sources were relative).
        format: detected schema, or None.
        kind: record kind, or None.
        capabilities: capabilities with a formatter for the format, in registry order.
        records: record count, or None when the file could not be read.
        sha256: hex digest of the file's bytes, or None when it could not be read.
        status: ``placed`` when at least one capability takes the file, else ``unplaced``.
        why: why it was placed (the format rule's reason) or why not; one line.
        label: safety prompts: ``harmful`` or ``harmless`` (from the file name).
        usable: records its format's schema accepts (None when not read through, or when the
            format is unknown and nothing was checked).
        invalid: records its format's schema refuses.
        problems: the first :data:`nexus.walk.PROBLEMS_SHOWN` refused records, ``"record N: reason"``.
    """

    path: str
    format: str | None
    kind: str | None
    capabilities: list[str]
    records: int | None
    sha256: str | None
    status: str
    why: str
    label: str | None = None
    usable: int | None = None
    invalid: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class Catalog:
    """What the organizer found, as written to ``catalog.json``."""

    out_dir: str
    files: list[FileEntry] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``catalog.json`` mapping."""
        return {"files": [asdict(f) for f in self.files], "models": self.models, "notes": self.notes}

    def by_capability(self) -> dict[str, list[FileEntry]]:
        """Placed files per capability, in registry order (capabilities with no file left out)."""
        out: dict[str, list[FileEntry]] = {}
        for name in CAPABILITIES:
            files = [f for f in self.files if name in f.capabilities]
            if files:
                out[name] = files
        return out

    @property
    def unplaced(self) -> list[FileEntry]:
        """Files no capability takes, or that could not be recognized or read."""
        return [f for f in self.files if f.status == "unplaced"]


def capabilities_for_format(fmt: str | None) -> list[str]:
    """Capabilities with a formatter for the detected format ``fmt``, in registry order."""
    if fmt is None:
        return []
    return [name for name in CAPABILITIES if fmt in capabilities.formats_of(name)]


def capabilities_for_kinds(kinds: set[str]) -> list[str]:
    """Capabilities with a formatter for some format of the record ``kinds``, in registry order."""
    fmts = {rule.format for rule in formats.RULES if rule.kind in kinds}
    return [name for name in CAPABILITIES if fmts & capabilities.formats_of(name)]


# Record kinds that training methods use (not a capability's own examples), and the methods.
METHOD_KINDS: dict[str, str] = methods.method_record_kinds()
SAFETY_LABELS = ("harmful", "harmless")


def safety_label(path: Path) -> str | None:
    """``harmful`` / ``harmless`` when the file name says which prompts it holds, else None."""
    name = path.name.lower()
    found = [label for label in SAFETY_LABELS if label in name]
    return found[0] if len(found) == 1 else None


def folder_capability(path: Path) -> str | None:
    """The capability the nearest enclosing folder is named after (``data/raw/vision-qa/x.json``:
    ``vision_qa``), or None."""
    for part in reversed(path.parent.parts):
        if part.lower().replace("-", "_") in CAPABILITIES:
            return part.lower().replace("-", "_")
    return None


def method_capabilities(path: Path, kind: str) -> tuple[list[str], str]:
    """Capabilities that get a method-data file (preference, KTO, text, safety prompts), and why.

    A file under a folder named after a capability (``data/raw/cot/pairs.jsonl``) goes to that
    capability only. Otherwise preference and KTO files go to the capabilities trained on general
    chat or instructions (text ones: podcast and tri_streaming take chats too, but not anybody's
    preference pairs), plain text and labelled safety prompts to every text capability.
    """
    methods = METHOD_KINDS[kind]
    name = folder_capability(path)
    if name is not None:
        return [name], f"for {methods} of capability {name} (its folder is named after it)"
    if kind in ("preference", "unpaired_preference"):  # the text capabilities that train on chats
        caps = [n for n in capabilities_for_kinds({"chat", "instruction"}) if CAPABILITIES[n].group == "text"]
        return caps, f"for {methods} of the general-chat capabilities (put it under a folder named " \
                     f"after a capability to target that one)"
    if kind == "prompt_only" and safety_label(path) is None:
        return [], ("prompts without responses: name the file *harmful* or *harmless* to use it for "
                    "safety / anti-refusal training")
    caps = [n for n, c in CAPABILITIES.items() if c.group == "text"]
    return caps, f"for {methods} of every text capability"


def unrouted_reason(kind: str) -> str:
    """Why a recognized kind has no capability, e.g. ``preference data: used by ... yet``."""
    what = formats.KINDS.get(kind, f"record kind '{kind}'")
    return f"{what}, no capability has a formatter for it yet"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# The schema check run on every record of every recognized file (see nexus.walk.RecordCheck).
RECORD_CHECK: walk.RecordCheck = record_checks.check_record


def classify_file(path: Path, head_records: int = 5,
                  check: walk.RecordCheck | None = RECORD_CHECK) -> FileEntry:
    """Detect, count, check and hash one data file, and decide where it goes.

    Args:
        path: the data file (already judged safe to open, see :func:`nexus.walk.judge_path`).
        head_records: records read from its head to detect the format.
        check: the schema check run on every record of a recognized file (None: none).

    Returns:
        The catalog entry; unreadable and unrecognized files, and files with no usable record,
        come back ``unplaced`` with the reason, never as an exception from the readers.
    """
    shown = path.as_posix()
    try:
        head = readers.peek_records(path, head_records)
    except readers.UnsupportedFileError as err:
        return FileEntry(shown, None, None, [], None, _hash_or_none(path), "unplaced", str(err))
    except readers.RecordError as err:
        return FileEntry(shown, None, None, [], None, _hash_or_none(path), "unplaced",
                         f"unreadable: {err}")
    if not head:
        return FileEntry(shown, None, None, [], 0, sha256_file(path), "unplaced",
                         f"no records: {readers.why_no_records(path)}")
    detection = formats.detect_format(head)
    try:
        tally = walk.tally_records(path, detection, check)
    except readers.RecordError as err:
        return FileEntry(shown, detection.format, detection.kind, [], None, _hash_or_none(path),
                         "unplaced", f"unreadable past its head: {err}")
    entry = FileEntry(shown, detection.format, detection.kind, [], tally.records, sha256_file(path),
                      "unplaced", "", usable=tally.usable, invalid=tally.invalid, problems=tally.problems)
    if detection.kind is None:
        entry.why = f"unrecognized: {detection.why}"
    elif tally.usable == 0:
        entry.why = f"no usable record: {tally.problems[0]}" if tally.problems else "no usable record"
    elif detection.kind in METHOD_KINDS:
        caps, routed = method_capabilities(path, detection.kind)
        entry.label = safety_label(path) if detection.kind == "prompt_only" else None
        entry.capabilities, entry.why = caps, f"{detection.why}; {routed}"
    else:
        entry.capabilities = capabilities_for_format(detection.format)
        entry.why = detection.why if entry.capabilities else (
            f"{unrouted_reason(detection.kind)}; detected as {detection.format}: {detection.why}")
        named = folder_capability(path)
        if named in entry.capabilities and len(entry.capabilities) > 1:  # the folder picks one of several
            entry.capabilities = [named]
            entry.why += f"; for {named} only (its folder is named after it)"
    entry.status = "placed" if entry.capabilities else "unplaced"
    return entry


def judge_file(found: walk.Found, head_records: int = 5) -> FileEntry:
    """The catalog entry of one path found in a source folder; never raises for a bad file.

    A path :mod:`nexus.walk` refused is unplaced with its reason, unopened; any error in
    :data:`FILE_ERRORS` while reading the file becomes its unplaced reason. The reason is one line.
    """
    shown = found.path.as_posix()
    if found.problem is not None:
        entry = FileEntry(shown, None, None, [], None, None, "unplaced", found.problem)
    else:
        try:
            entry = classify_file(found.path, head_records)
        except FILE_ERRORS as err:
            entry = FileEntry(shown, None, None, [], None, None, "unplaced",
                              f"could not be read as data ({type(err).__name__}: {err})")
    entry.why = walk.one_line(entry.why)
    return entry


def _hash_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _is_generated(path: Path, out_dir: Path) -> bool:
    try:
        rel = path.relative_to(out_dir)
    except ValueError:
        return False
    return rel == Path(CATALOG) or (len(rel.parts) == 2 and rel.name == MANIFEST)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _manifest(name: str, files: list[FileEntry]) -> dict[str, Any]:
    """A capability's manifest: its own example files, and the files its methods may use.

    Only placed files are listed, and a placed file has usable records: ``records`` counts them
    all, ``usable`` those its format's schema accepts, ``invalid`` the rest (named in the catalog).
    """

    def entry(f: FileEntry) -> dict[str, Any]:
        usable = f.records if f.usable is None else f.usable
        out = {"path": f.path, "format": f.format, "kind": f.kind, "records": f.records,
               "usable": usable, "invalid": f.invalid, "sha256": f.sha256}
        return {**out, "label": f.label} if f.label else out

    return {
        "capability": name,
        "files": [entry(f) for f in files if f.kind not in METHOD_KINDS],
        "method_files": [entry(f) for f in files if f.kind in METHOD_KINDS],
        "preference_pairs": preference_source(files),
    }


PAIRS_BUILT = ("built at training time from this capability's own examples: the reference answer "
               "chosen, the base model's own wrong answer rejected")


def preference_source(files: list[FileEntry]) -> str:
    """Where dpo / orpo / kto get their pairs for a capability with these files."""
    paired = [f.path for f in files if f.kind in ("preference", "unpaired_preference")]
    return f"files: {', '.join(paired)}" if paired else PAIRS_BUILT


def _under(path: Path, folder: Path) -> Path | None:
    try:
        return Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return None


def organize(
    sources: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    head_records: int = 5,
    model_dirs: Iterable[str | os.PathLike[str]] = (),
    move: bool = False,
    raw_dir: str | os.PathLike[str] = RAW_DIR,
) -> Catalog:
    """Catalog every data file under ``sources`` and write the per-capability manifests.

    Args:
        sources: folders (or single files) to scan recursively; a missing one is skipped with a
            note (``data/raw`` may be empty or absent).
        out_dir: where ``catalog.json`` and ``<capability>/manifest.json`` go. It is replaced as a
            whole, atomically: a failure leaves the previous ``out_dir`` (or none) and no temp dir.
        head_records: records read from each file's head to detect its format.
        model_dirs: folders whose model sub-folders are classified (see :func:`nexus.modality.sort_models`).
        move: move placed files found under ``raw_dir`` into ``out_dir/<capability>/`` (the seed's
            behaviour). Off by default: the organizer otherwise never touches user files.
        raw_dir: the only folder ``move`` takes files from.

    Returns:
        The catalog that was written.

    Raises:
        OrganizeError: ``head_records`` < 1, ``out_dir`` is an existing file, or ``move`` would
            overwrite a file.
    """
    if head_records < 1:
        raise OrganizeError(f"head_records must be at least 1, got {head_records}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OrganizeError(f"{out}: exists and is not a folder; choose another --out")
    out_resolved = out.resolve()
    catalog = Catalog(out_dir=out.as_posix())
    skipped = {"documentation": 0, "media": 0}
    seen: set[Path] = set()

    # Files an earlier `move` put inside out_dir are user data: keep them listed and carried over.
    roots: list[tuple[Path, bool]] = [(Path(s), False) for s in sources]
    if out.is_dir():
        roots.append((out, True))
    for root, is_out in roots:
        if not is_out and not root.exists():
            catalog.notes.append(f"source {root.as_posix()} does not exist; skipped")
            continue
        for found in walk.data_files(root, None if is_out else out_resolved, skipped):
            # A refused path is never followed: its own place is its identity.
            resolved = Path(os.path.abspath(found.path) if found.problem else os.path.realpath(found.path))
            if resolved in seen or _is_generated(resolved, out_resolved):
                continue
            seen.add(resolved)
            catalog.files.append(judge_file(found, head_records))
    if skipped["media"]:
        catalog.notes.append(f"skipped {skipped['media']} media files (referenced by records, not data)")
    if skipped["documentation"]:
        catalog.notes.append(
            f"skipped {skipped['documentation']} documentation files (README, LICENSE, SOURCE.md)"
        )
    catalog.models = modality.sort_models(model_dirs, catalog.notes)
    for name, files in catalog.by_capability().items():
        text = CAPABILITIES[name].group == "text"  # multimodal capabilities train with sft only
        if text and CAPABILITIES[name].implemented and preference_source(files) == PAIRS_BUILT:
            catalog.notes.append(f"{name}: no preference file; dpo/orpo/kto pairs are {PAIRS_BUILT}")

    relocations = _plan_relocations(catalog, out, Path(raw_dir), move)
    _write_atomically(catalog, out, relocations)
    return catalog


def _plan_relocations(catalog: Catalog, out: Path, raw_dir: Path,
                      move: bool) -> list[tuple[Path, Path]]:
    """(current file, path relative to out_dir) for carried-over and moved files.

    Updates the moved files' catalog paths to their destination.
    """
    plan: list[tuple[Path, Path]] = []
    for entry in catalog.files:
        inside = _under(Path(entry.path), out)
        if inside is not None:
            plan.append((Path(entry.path), inside))
    taken = {rel for _, rel in plan}
    if not move:
        return plan
    moved = 0
    for entry in catalog.files:
        rel = _under(Path(entry.path), raw_dir)
        if entry.status != "placed" or rel is None or _under(Path(entry.path), out) is not None:
            continue
        if entry.kind in MEDIA_KINDS:
            catalog.notes.append(
                f"{entry.path}: kept in place (its records reference media by relative path)"
            )
            continue
        dest = Path(entry.capabilities[0]) / rel
        if dest in taken:
            raise OrganizeError(
                f"--move: {out / dest} already exists; rename {entry.path} or move it by hand"
            )
        taken.add(dest)
        plan.append((Path(entry.path), dest))
        entry.path = (out / dest).as_posix()
        moved += 1
    if moved:
        catalog.notes.append(f"moved {moved} files from {raw_dir.as_posix()} into {out.as_posix()}")
    return plan


def _write_atomically(catalog: Catalog, out: Path, relocations: list[tuple[Path, Path]]) -> None:
    """Build the output in a temp dir next to ``out``, then swap it in with renames."""
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = as_created(Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent)), directory=True)
    backup: Path | None = None
    done: list[tuple[Path, Path]] = []
    try:
        _write_json(tmp / CATALOG, catalog.to_dict())
        for name, files in catalog.by_capability().items():
            _write_json(tmp / name / MANIFEST, _manifest(name, files))
        for src, rel in relocations:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, target)
            done.append((src, target))
        if out.exists():
            backup = parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, backup)
        os.rename(tmp, out)
    except BaseException as err:
        if backup is not None and backup.exists() and not out.exists():
            os.rename(backup, out)
        stranded = []
        for src, target in reversed(done):
            try:
                src.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(target, src)
            except OSError:
                stranded.append(src)
        if stranded:  # never delete user files: leave the temp dir for the user to recover from
            raise OrganizeError(
                f"organize failed ({err}) and could not move back {len(stranded)} files "
                f"(e.g. {stranded[0]}); they are under {tmp}; move them back by hand"
            ) from err
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
