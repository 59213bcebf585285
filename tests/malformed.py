"""A corpus of malformed data files, written by these tests, for the organizer (and training) to survive.

:func:`write_corpus` fills a folder with the files a new user might drop into ``data/raw/`` by
mistake or that a hostile source might ship: truncated, binary, empty, wrong keys, a huge line,
non-UTF-8, BOM, UTF-16, NaN, deep nesting, symlinks out and looping, a FIFO, unreadable files,
``../`` media paths, odd file names, wrongly typed fields. Each :class:`Entry` says what it is and
what the organizer must say about it: ``status`` (``unplaced`` for a file it must refuse,
``placed`` for a valid file that must still train) and ``expect``, words the catalog entry's
reason (``why``, or for a placed file the ``problems`` of its refused records) must contain.

WRITTEN BY US: every record here is invented for these tests (questions like "Written for the
malformed corpus: what is 2 + 3?"); none is, or pretends to be, third-party data. Good data for the
same run comes from ``data/samples`` (see tests/unit/test_malformed_corpus.py).

Entries the filesystem or the user cannot create (a newline in a name, a socket path over the
length limit, a device node without CAP_MKNOD) are left out of the returned list.
"""

from __future__ import annotations

import json
import os
import random
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HUGE_LINE_MB = 8  # the huge-line record's size: large enough to be a "huge line", small to stay fast
DEEP_LEVELS = 100_000


@dataclass(frozen=True)
class Entry:
    """One corpus file: its path in the corpus, what it is, and what the organizer must report."""

    name: str
    what: str
    expect: tuple[str, ...]
    status: str = "unplaced"


def _qa(n: int, start: int = 1) -> list[dict[str, str]]:
    """``n`` GSM8K-shaped records written for this corpus (question, worked answer, #### number)."""
    return [{"question": f"Written for the malformed corpus: what is {i} + {i + 1}?",
             "answer": f"{i} + {i + 1} = {2 * i + 1}\n#### {2 * i + 1}"} for i in range(start, start + n)]


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _chat(user: str, reply: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": user}, {"from": "gpt", "value": reply}]


def _write(text: str | bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    return write


def _symlink(target: str) -> Callable[[Path], None]:
    return lambda path: os.symlink(target, path)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
    finally:
        sock.close()  # the socket file stays


def _device(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null


def _locked(text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")
        os.chmod(path, 0)
    return write


def _locked_dir(path: Path) -> None:
    path.mkdir()
    (path / "inside.jsonl").write_text(_jsonl(_qa(2)), encoding="utf-8")
    os.chmod(path, 0)


def _empty_dir(path: Path) -> None:
    path.mkdir()


def _huge_line(path: Path) -> None:
    filler = "x" * (HUGE_LINE_MB << 20)
    big = {"question": f"Written for the malformed corpus: a question padded to {HUGE_LINE_MB} MB. {filler}",
           "answer": "2 + 2 = 4\n#### 4"}
    path.write_text(_jsonl([big, *_qa(2)]), encoding="utf-8")


def _random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _control_text() -> str:
    rng = random.Random(7)
    controls = [chr(c) for c in (*range(1, 9), *range(14, 32))]
    return "".join(rng.choice(controls) if i % 3 else "a" for i in range(4000)) + "\n"


def _kto_string_labels() -> str:
    records = [{"messages": [{"role": "user", "content": f"Written for the malformed corpus: say {w}."},
                             {"role": "assistant", "content": w}], "label": label}
               for w, label in (("yes", "true"), ("no", "false"), ("maybe", "true"))]
    return json.dumps(records, indent=1)


def _conversations_turn_string() -> str:
    good = [{"conversations": _chat(f"Written for the malformed corpus: hello {i}", f"Hello {i}!")}
            for i in range(4)]
    bad = [{"conversations": "human: this should have been a list of turns"}]
    return json.dumps([*good, *bad, good[0]], indent=1)


def _media_escape() -> str:
    records = [{"messages": [{"role": "user", "content": "<image>Written for the malformed corpus: what is this?"},
                             {"role": "assistant", "content": "A file that is not an image."}],
                "images": ["../../../../etc/passwd"]}]
    return json.dumps(records, indent=1)


def _deep(suffix: str) -> str:
    nested = "[" * DEEP_LEVELS + "]" * DEEP_LEVELS
    record = '{"question": "Written for the malformed corpus: deep", "answer": ' + nested + "}"
    good = json.dumps(_qa(1)[0])
    return f"{good}\n{record}\n" if suffix == ".jsonl" else f"[{good}, {record}]"


QA = _jsonl(_qa(3))
BINARY = ("binary, not text",)

# name -> (what it is, expected reason words, status, writer)
CORPUS: dict[str, tuple[str, tuple[str, ...], str, Callable[[Path], None]]] = {
    "truncated.jsonl": ("JSONL whose last record is cut off mid-string",
                        ("line 3 (record 3)", "invalid JSON"), "unplaced", _write(QA[:-20])),
    "truncated.json": ("a JSON array cut off inside its second record",
                       ("record 2", "invalid JSON"), "unplaced", _write(json.dumps(_qa(3))[:150])),
    "not_objects.jsonl": ("JSONL whose records are lists, not objects",
                          ("expected a JSON object", "got list"), "unplaced", _write("[1, 2]\n[3]\n")),
    "random_bytes.jsonl": ("64 KiB of random bytes named .jsonl", BINARY, "unplaced",
                           _write(_random_bytes(1 << 16, 1))),
    "random_bytes.txt": ("random bytes named .txt (must not become pretraining text)", BINARY,
                         "unplaced", _write(_random_bytes(1 << 14, 2))),
    "control_chars.txt": ("valid UTF-8 made mostly of control characters, named .txt", BINARY,
                          "unplaced", _write(_control_text())),
    "empty.jsonl": ("zero bytes", ("the file is empty",), "unplaced", _write("")),
    "blank.json": ("only whitespace, named .json", ("found an empty file",), "unplaced", _write(" \n\n")),
    "empty_array.json": ("an empty JSON array", ("no records",), "unplaced", _write("[]")),
    "wrong_keys.jsonl": ("objects whose keys match no known format",
                         ("unrecognized", "bar, foo"), "unplaced", _write('{"foo": 1, "bar": 2}\n')),
    "huge_line.jsonl": (f"a valid GSM8K-shaped record on one {HUGE_LINE_MB} MB line, then two short ones",
                        (), "placed", _huge_line),
    "latin1.jsonl": ("Latin-1 text, not UTF-8", ("not valid UTF-8",), "unplaced",
                     _write('{"question": "Written for the corpus: café?", "answer": "#### 1"}\n'.encode("latin-1"))),
    "utf8_bom.jsonl": ("valid records after a UTF-8 byte-order mark (accepted)", (), "placed",
                       _write("\ufeff" + QA)),
    "utf16.jsonl": ("UTF-16 with its byte-order mark", ("UTF-16 text", "re-save it as UTF-8"), "unplaced",
                    _write(QA.encode("utf-16"))),
    "utf16_no_bom.json": ("UTF-16-LE without a byte-order mark", ("UTF-16 text without a byte-order mark",),
                          "unplaced", _write(json.dumps(_qa(3)).encode("utf-16-le"))),
    "nan.jsonl": ("a record holding NaN (Python's json accepts it; JSON does not)",
                  ("record 2", "NaN is not valid JSON"), "unplaced",
                  _write(QA[: QA.index("\n") + 1] + '{"question": "q", "answer": "#### 1", "score": NaN}\n')),
    "infinity.json": ("a JSON array with -Infinity in a record", ("-Infinity is not valid JSON",), "unplaced",
                      _write('[{"question": "q", "answer": "#### 1", "score": -Infinity}]')),
    "deep.jsonl": (f"a record nested {DEEP_LEVELS} levels deep (RecursionError in json)",
                   ("record 2", "nested too deeply"), "unplaced", _write(_deep(".jsonl"))),
    "deep.json": (f"a JSON array whose second record is nested {DEEP_LEVELS} levels deep",
                  ("record 2", "nested too deeply"), "unplaced", _write(_deep(".json"))),
    "huge_int.jsonl": ("an integer of 5000 digits (over Python's conversion limit)", ("cannot be decoded",),
                       "unplaced", _write('{"question": "q", "answer": ' + "7" * 5000 + "}\n")),
    "passwd.jsonl": ("a symlink out of the data root, to /etc/passwd", ("symlink out of the data root",),
                     "unplaced", _symlink("/etc/passwd")),
    "etc": ("a symlinked folder out of the data root, to /etc", ("symlink out of the data root",), "unplaced",
            _symlink("/etc")),
    "loop.jsonl": ("a symlink to itself", ("symlink loop",), "unplaced", _symlink("loop.jsonl")),
    "ping.json": ("a symlink to pong.json, which links back", ("symlink loop",), "unplaced", _symlink("pong.json")),
    "pong.json": ("a symlink to ping.json, which links back", ("symlink loop",), "unplaced", _symlink("ping.json")),
    "gone.jsonl": ("a symlink to a file that does not exist", ("broken symlink",), "unplaced",
                   _symlink("no-such-file.jsonl")),
    "pipe.jsonl": ("a FIFO named .jsonl: opening it would block forever", ("FIFO", "never opened"), "unplaced",
                   _fifo),
    "sock.jsonl": ("a UNIX socket named .jsonl", ("a socket", "never opened"), "unplaced", _socket),
    "null_device.jsonl": ("a character device (like /dev/null) named .jsonl",
                          ("character device", "never opened"), "unplaced", _device),
    "locked.jsonl": ("valid records in a file of mode 000 (root could read it; it is not meant to be)",
                     ("not readable by its owner (mode 000)", "chmod u+r"), "unplaced", _locked(QA)),
    "locked_dir": ("a folder of mode 000 holding a valid file", ("folder not readable by its owner (mode 000)",),
                   "unplaced", _locked_dir),
    "folder.jsonl": ("an empty folder named like a data file", ("a folder named like a data file",), "unplaced",
                     _empty_dir),
    "header_only.csv": ("a CSV with a header row and no records",
                        ("a header row (question, answer) and no records",), "unplaced",
                        _write("question,answer\n")),
    "sheet.xlsx": ("a spreadsheet: no reader for it", ("unsupported file type '.xlsx'",), "unplaced",
                   _write(b"PK\x03\x04 not really a spreadsheet")),
    "media_escape.json": ("image records whose image path is ../../../../etc/passwd",
                          ("no usable record", "record 1", "etc/passwd"), "unplaced", _write(_media_escape())),
    "kto_string_label.json": ('KTO records whose label is the string "true"/"false"',
                              ("no usable record", "record 1", "label is the string 'true'"), "unplaced",
                              _write(_kto_string_labels())),
    "conversations_string.json": ("ShareGPT records, the fifth with conversations as a string",
                                  ("record 5", "conversations"), "placed", _write(_conversations_turn_string())),
    "with space.jsonl": ("valid records; a space in the name", (), "placed", _write(QA)),
    "ünïcødé 数据.jsonl": ("valid records; a non-ASCII name", (), "placed", _write(QA)),
    "-leading-dash.jsonl": ("valid records; a name that looks like a command-line option", (), "placed",
                            _write(QA)),
    "new\nline.jsonl": ("wrong keys in a file with a newline in its name (its reason stays one line)",
                        ("unrecognized",), "unplaced", _write('{"foo": 1}\n')),
}


def write_corpus(folder: Path) -> list[Entry]:
    """Write the malformed corpus into ``folder`` (created); return the entries written.

    An entry the filesystem or the user cannot create (a newline in a name, a socket path over
    the length limit, a device node without the privilege) is left out.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (what, expect, status, write) in CORPUS.items():
        path = folder / name
        try:
            write(path)
        except OSError:
            continue
        written.append(Entry(name, what, expect, status))
    return written


def restore_permissions(folder: Path) -> None:
    """Give back the permissions the corpus took (so a temp folder can be removed by any user)."""
    for name in ("locked.jsonl", "locked_dir"):
        path = folder / name
        if path.exists():
            os.chmod(path, 0o700)
