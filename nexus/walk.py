"""Finding the data files under a source folder, and judging each path before anything opens it.

:func:`data_files` walks a source folder (the *data root*) in sorted order and yields every
candidate data file as a :class:`Found`. A path that must not be opened as data comes with the
reason instead of being skipped in silence or opened:

- anything that is not a regular file: a FIFO (opening one blocks forever), a socket, a device,
  or a folder named like a data file (``x.jsonl/``); judged with ``lstat``/``stat`` only;
- a symlink that leaves the data root (``data/raw/passwd -> /etc/passwd``), loops, or is broken
  (symlinks that stay inside the root are followed);
- a file or folder whose mode gives its owner no read permission (``chmod 000``): refused even
  when running as root, who could read it, because such a file is clearly not meant to be read;
  and, for other users, one the process may not read.

Hidden names (``.x``), documentation (README, LICENSE, SOURCE.md) and media files (referenced by
records, never read as data) are skipped and counted. No file is opened by the walk.

:func:`tally_records` then reads a file judged safe through once, counting its records and running
the schema check (:data:`RecordCheck`) on each; a check that trips on an odd record refuses that
record, never the run.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus import formats, readers
from nexus.readers import SUPPORTED_SUFFIXES

# Files that document a dataset rather than hold records.
DOC_NAMES = ("readme", "license", "licence", "copying", "notice", "source")
DOC_FILES = ("SOURCE.md",)
# Media referenced by records (images, audio, video); never read as data.
MEDIA_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".svg",
    ".mp3", ".wav", ".flac", ".ogg", ".m4a", ".aac", ".opus",
    ".mp4", ".avi", ".mov", ".mkv", ".webm",
})
PROBLEMS_SHOWN = 3  # refused records named (number and reason) per file
# A record's schema check: (record, detected format, record kind, file) -> None when the record is
# usable, else the reason it is not (nexus.record_checks.check_record).
RecordCheck = Callable[[dict[str, Any], str, str, Path], "str | None"]
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISDIR, "a folder"))


@dataclass(frozen=True)
class Found:
    """A candidate data file: its path as found, and why it cannot be read as data (or None)."""

    path: Path
    problem: str | None = None


def is_doc(name: str) -> bool:
    """Whether a file name is a dataset's documentation (README, LICENSE, SOURCE.md, ...)."""
    stem = name.split(".", 1)[0].lower()
    return name in DOC_FILES or stem in DOC_NAMES


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _link_problem(path: Path, root: str | None) -> str | None:
    """Why a symlink must not be followed (loop, broken, leaves ``root``), or None."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"a symlink loop (-> {os.readlink(path)}); remove the link"
        if err.errno == errno.ENOENT:
            return f"a broken symlink (-> {os.readlink(path)}: no such file); remove the link"
        return f"a symlink that cannot be followed ({err.strerror or err})"
    target = os.path.realpath(path)
    if root is not None and not _inside(target, root):
        return (f"a symlink out of the data root {root} (-> {target}); copy the file into the "
                f"folder instead")
    return None


def judge_path(path: Path, root: str | None) -> str | None:
    """Why ``path`` must not be opened as a data file, or None when it is safe to read.

    Args:
        path: a file (or a symlink, or anything else) found in a source folder.
        root: the data root, resolved (``os.path.realpath``); symlinks must resolve inside it.
            None for a file named as a source itself.

    Returns:
        A one-line reason (see the module docstring), or None. Never opens ``path``.
    """
    try:
        if path.is_symlink() and (problem := _link_problem(path, root)) is not None:
            return problem
        mode = os.stat(path).st_mode
    except OSError as err:
        return f"cannot be examined ({err.strerror or err})"
    for test, kind in _KINDS:
        if test(mode):
            what = f"{kind} named like a data file" if kind == "a folder" else kind
            return f"{what}, not a regular file; never opened"
    return _access_problem(path, mode, "file", "chmod u+r")


def _access_problem(path: Path, mode: int, what: str, fix: str) -> str | None:
    needed = stat.S_IRUSR | (stat.S_IXUSR if what == "folder" else 0)
    if mode & needed != needed:
        return f"{what} not readable by its owner (mode {stat.S_IMODE(mode):03o}); {fix}"
    if not os.access(path, os.R_OK | (os.X_OK if what == "folder" else 0)):
        return f"{what} not readable (permission denied for this user)"
    return None


def data_files(root: Path, exclude: Path | None, skipped: dict[str, int]) -> Iterator[Found]:
    """Candidate data files under ``root`` (a folder or one file), in sorted order.

    Args:
        root: the source folder (the data root) or a single file.
        exclude: a folder (resolved) never entered, e.g. the organizer's own output.
        skipped: counts of skipped ``documentation`` and ``media`` files, updated in place.

    Yields:
        A :class:`Found` per data file; those that must not be opened carry their reason, and so
        do sub-folders that cannot be entered or are named like data files. Folders are never
        followed through symlinks: one inside the root is scanned at its real place, one leading
        out of the root is reported.
    """
    if not root.is_dir():
        yield Found(root, judge_path(root, None))
        return
    real_root = os.path.realpath(root)
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        yield from _unlisted(errors)
        here = Path(dirpath)
        dirnames[:] = yield from _sub_folders(here, dirnames, real_root, exclude)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if is_doc(name):
                skipped["documentation"] += 1
            elif Path(name).suffix.lower() in MEDIA_SUFFIXES:
                skipped["media"] += 1
            else:
                yield Found(here / name, judge_path(here / name, real_root))
    yield from _unlisted(errors)


def _unlisted(errors: list[OSError]) -> Iterator[Found]:
    """The folders ``os.walk`` could not list (its ``onerror`` calls), once each."""
    for err in errors:
        yield Found(Path(err.filename), f"folder cannot be listed ({err.strerror or err})")
    errors.clear()


def _sub_folders(here: Path, names: list[str], root: str,
                 exclude: Path | None) -> Generator[Found, None, list[str]]:
    """Yield the sub-folders to report; return the names of those to enter, sorted."""
    enter = []
    for name in sorted(names):
        path = here / name
        if name.startswith(".") or (exclude is not None and os.path.realpath(path) == str(exclude)):
            continue
        try:
            link = path.is_symlink()
            problem = _link_problem(path, root) if link else _access_problem(
                path, os.stat(path).st_mode, "folder", "chmod u+rx")
        except OSError as err:
            link, problem = False, f"cannot be examined ({err.strerror or err})"
        if problem is not None:
            yield Found(path, problem)
        elif not link:  # a link inside the root: its folder is scanned at its real place
            if path.suffix.lower() in SUPPORTED_SUFFIXES:
                yield Found(path, f"a folder named like a data file ({path.suffix}), not a file; files "
                                  f"inside it are scanned on their own")
            enter.append(name)
    return enter


# --- reading a file through: counting and checking its records ---------------------------------


@dataclass
class Tally:
    """One full pass over a file: its records, and those its format's schema refuses."""

    records: int = 0
    invalid: int = 0
    problems: list[str] = field(default_factory=list)
    checked: bool = False

    @property
    def usable(self) -> int | None:
        """Records not refused; None when nothing was checked (format unknown, or no check)."""
        return self.records - self.invalid if self.checked else None


def tally_records(path: Path, detection: formats.Detection, check: RecordCheck | None) -> Tally:
    """Count every record of ``path`` (streaming) and run ``check`` on each (recognized files)."""
    if detection.format is None or detection.kind is None or check is None:
        return Tally(records=readers.count_records(path))
    out = Tally(checked=True)
    for record in readers.iter_records(path):
        out.records += 1
        reason = _checked(check, record, detection.format, detection.kind, path)
        if reason is not None:
            out.invalid += 1
            if len(out.problems) < PROBLEMS_SHOWN:
                out.problems.append(f"record {out.records}: {one_line(reason)}")
    return out


def _checked(check: RecordCheck, record: dict[str, Any], fmt: str, kind: str, path: Path) -> str | None:
    """``check``'s verdict on one record; a check that fails on an odd record refuses that record."""
    try:
        return check(record, fmt, kind, path)
    except (ValueError, LookupError, TypeError, AttributeError, RecursionError) as err:
        return f"cannot be checked ({type(err).__name__}: {err})"


def one_line(text: str) -> str:
    """``text`` with newlines and other unprintable characters escaped (``\\n``), for one-line reasons."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
