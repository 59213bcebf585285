"""Streaming readers for the data files the organizer and the trainers consume.

Every reader yields one ``dict`` per record and keeps memory flat: JSONL and CSV are read line by
line, a JSON array is decoded incrementally over fixed-size chunks (never ``json.load`` on the
whole file), parquet is read batch by batch, and plain text paragraph by paragraph.

Supported files: ``.jsonl``/``.ndjson``, ``.json`` (a top-level array of objects, one object, or
objects one after another), ``.csv`` (with a header row), ``.parquet`` and ``.txt`` (one
``{"text": ...}`` record per paragraph separated by blank lines; per line when the file has no
blank line).

Strict about what is text and what is JSON, so that a bad file fails with a one-line
:class:`RecordError` naming the file (and the record) instead of a traceback or a hang: the head of
a text file is sniffed first (UTF-16/UTF-32 is refused with "re-save it as UTF-8"; NUL bytes or
many control characters mean "binary, not text"), ``NaN``/``Infinity`` are refused (not JSON, RFC
8259; Python's json would accept them), a record nested too deeply for the parser is a RecordError
rather than ``RecursionError``, and a line or record over :data:`MAX_RECORD_CHARS` is refused before
it is held in memory whole.

No torch and no pyarrow at import time: ``nexus plan`` imports this module.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Characters read from a .json file per chunk; tests shrink it to prove peeking stays at the head.
CHUNK_SIZE = 1 << 16
PARQUET_BATCH_ROWS = 1024
CSV_FIELD_LIMIT = 1 << 26  # characters per CSV field
MAX_RECORD_CHARS = 1 << 27  # characters per JSONL line, JSON record or text line (128 Mi)
SNIFF_BYTES = 8192  # bytes of a text file's head checked for being text at all
# Bytes that never occur in text: C0 controls other than tab, newlines, form feed; and DEL.
_CONTROL_BYTES = frozenset(range(0x20)) - {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B} | {0x7F}
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
         (b"\xfe\xff", "UTF-16"))

JSONL_SUFFIXES = (".jsonl", ".ndjson")
SUPPORTED_SUFFIXES = (*JSONL_SUFFIXES, ".json", ".csv", ".parquet", ".txt")

_WS = " \t\r\n\ufeff"
_JSON_WS = " \t\r\n"  # whitespace in JSON text (RFC 8259)


class RecordError(ValueError):
    """A data file that cannot be read as records; the message names the file and where."""


class UnsupportedFileError(ValueError):
    """A file whose type no reader handles."""


class _NonFinite(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity`` in JSON text."""


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


# Strict JSON: NaN and Infinity are not JSON (RFC 8259), though Python's json accepts them.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedFileError(
            f"{path}: unsupported file type '{suffix or '(none)'}'; "
            f"convert it to one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return suffix


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Stream the records of a data file, one dict at a time, with flat memory.

    Args:
        path: a ``.jsonl``, ``.json``, ``.csv``, ``.parquet`` or ``.txt`` file.

    Yields:
        One dict per record, in file order.

    Raises:
        UnsupportedFileError: the file type has no reader.
        RecordError: the file is not valid for its type; the message names the file and the
            record number or line.
    """
    p = Path(path)
    suffix = _suffix(p)
    readers = {".json": _iter_json, ".csv": _iter_csv, ".parquet": _iter_parquet, ".txt": _iter_txt}
    reader = readers.get(suffix, _iter_jsonl)
    try:
        if suffix != ".parquet":
            _check_text_head(p)
        yield from reader(p)
    except UnicodeDecodeError as err:
        raise RecordError(
            f"{p}: not valid UTF-8 text near byte {err.start}; re-save the file as UTF-8"
        ) from err
    except OSError as err:
        raise RecordError(f"{p}: cannot be read ({err.strerror or err})") from err


def _check_text_head(path: Path) -> None:
    """Refuse a file whose first :data:`SNIFF_BYTES` are not UTF-8-compatible text.

    Raises:
        RecordError: UTF-16/UTF-32 text (by its byte-order mark, or NUL bytes in every other
            place), or binary data: NUL bytes, or more than 1 in 100 bytes control characters.
    """
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    for bom, name in _BOMS:
        if head.startswith(bom):
            raise RecordError(f"{path}: {name} text; re-save it as UTF-8")
    nul = head.find(b"\0")
    if nul >= 0:
        even, odd = head[0::2].count(0), head[1::2].count(0)  # UTF-16 ASCII: a NUL in every other byte
        if min(even, odd) == 0 and max(even, odd) * 3 >= len(head) // 2:
            raise RecordError(f"{path}: UTF-16 text without a byte-order mark; re-save it as UTF-8")
        raise RecordError(f"{path}: binary, not text (a NUL byte at byte {nul}); a data file must be "
                          f"UTF-8 text")
    controls = sum(1 for b in head if b in _CONTROL_BYTES)
    if controls * 100 > len(head):
        raise RecordError(f"{path}: binary, not text ({controls} control characters in its first "
                          f"{len(head)} bytes); a data file must be UTF-8 text")


def _lines(f: Any, path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) over a text file, refusing a line over :data:`MAX_RECORD_CHARS`."""
    for line_no, line in enumerate(iter(lambda: f.readline(MAX_RECORD_CHARS + 1), ""), start=1):
        if len(line) > MAX_RECORD_CHARS:
            raise RecordError(f"{path}: line {line_no}: longer than {MAX_RECORD_CHARS} characters; "
                              f"split it (no record may be that long)")
        yield line_no, line


def _loads(text: str, path: Path, where: str) -> Any:
    """One JSON value (strict: no NaN/Infinity); errors become RecordError naming ``where``."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: {where}: invalid JSON: {err.msg} (column {err.colno})") from None
    except (ValueError, RecursionError) as err:
        raise _undecodable(err, path, where) from None


def _undecodable(err: ValueError | RecursionError, path: Path, where: str) -> RecordError:
    """The RecordError for a JSON value the strict decoder refuses (other than a syntax error)."""
    if isinstance(err, _NonFinite):
        return RecordError(f"{path}: {where}: {err} is not valid JSON (write null or a number)")
    if isinstance(err, RecursionError):
        return RecordError(f"{path}: {where}: nested too deeply to read (lists or objects more than "
                           f"about {sys.getrecursionlimit()} levels deep)")
    return RecordError(f"{path}: {where}: cannot be decoded ({err})")  # e.g. a 5000-digit integer


def peek_records(path: str | os.PathLike[str], n: int) -> list[dict[str, Any]]:
    """Read only the first ``n`` records of a data file.

    Args:
        path: a supported data file (see :func:`iter_records`).
        n: how many records to read from the head.

    Returns:
        Up to ``n`` records; fewer when the file is shorter.

    Raises:
        UnsupportedFileError: the file type has no reader.
        RecordError: one of the first ``n`` records is invalid.
    """
    if n <= 0:
        return []
    records = iter_records(path)
    try:
        return list(itertools.islice(records, n))
    finally:
        records.close()  # type: ignore[attr-defined]


def count_records(path: str | os.PathLike[str]) -> int:
    """Count the records of a data file by streaming it (parquet: from its metadata).

    Every record is parsed on the way, so a broken record anywhere in the file is reported.

    Raises:
        UnsupportedFileError: the file type has no reader.
        RecordError: a record is invalid.
    """
    p = Path(path)
    if _suffix(p) == ".parquet":
        pf = _parquet_file(p)
        return int(pf.metadata.num_rows)
    return sum(1 for _ in iter_records(p))


def why_no_records(path: str | os.PathLike[str]) -> str:
    """Why a readable data file yields no record, in a few words (for the catalog).

    ``"a header row (question, answer) and no records"`` for a CSV with only its header,
    ``"the file is empty"`` for zero bytes, else ``"no records in it (only whitespace or an empty
    array)"``.
    """
    p = Path(path)
    if p.stat().st_size == 0:
        return "the file is empty"
    suffix = _suffix(p)
    if suffix == ".parquet":
        return "a parquet file with no rows"
    if suffix == ".csv":
        with open(p, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), None)
        if header:
            shown = ", ".join(header[:6]) + (f" and {len(header) - 6} more" if len(header) > 6 else "")
            return f"a header row ({shown}) and no records"
    return "no records in it (only whitespace or an empty array)"


# --- JSONL -----------------------------------------------------------------------------------


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8-sig") as f:
        number = 0
        for line_no, line in _lines(f, path):
            if not line.strip():
                continue  # blank lines are tolerated (LLaMA-Factory's v1 demo has one)
            number += 1
            yield _jsonl_record(line, path, line_no, number)


def _jsonl_record(line: str, path: Path, line_no: int, number: int) -> dict[str, Any]:
    """The object on one JSONL line; ``line_no`` and record ``number`` name it in an error.

    A line that is one valid object followed by JSON whitespace (the common case) takes a single
    ``raw_decode``; any other line goes the strict way, :func:`_loads`, for its exact value or error.
    """
    if line[0] == "{":
        try:
            value, end = _DECODER.raw_decode(line)
        except (ValueError, RecursionError):
            pass
        else:
            if end == len(line) or not line[end:].strip(_JSON_WS):
                return value
    where = f"line {line_no} (record {number})"
    return _as_object(_loads(line, path, where), path, where)


def _as_object(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(
            f"{path}: {where}: expected a JSON object, got {type(value).__name__}; "
            f"every record must be an object of named fields"
        )
    return value


# --- JSON (incremental) ----------------------------------------------------------------------


class _ChunkedText:
    """A text buffer over a file that grows chunk by chunk and forgets what was consumed."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line_base = 1  # line number of buf[0]

    def more(self, at_least: int = 0) -> bool:
        """Read another chunk (or at least ``at_least`` characters); False at end of file."""
        if self.eof:
            return False
        if self.pos:
            self.line_base += self.buf.count("\n", 0, self.pos)
            self.buf = self.buf[self.pos:]
            self.pos = 0
        chunk = self.f.read(max(CHUNK_SIZE, at_least))
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def skip_ws(self) -> str:
        """Skip whitespace; return the next character, or '' at end of file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def line(self, pos: int | None = None) -> int:
        return self.line_base + self.buf.count("\n", 0, self.pos if pos is None else pos)


def _maybe_truncated(err: json.JSONDecodeError, size: int) -> bool:
    """Whether a decode error may only mean the buffer ends mid-value."""
    return err.msg.startswith("Unterminated string") or err.pos >= size - 64


def _decode_next(text: _ChunkedText, decoder: json.JSONDecoder, path: Path, where: str) -> Any:
    while True:
        try:
            value, end = decoder.raw_decode(text.buf, text.pos)
        except json.JSONDecodeError as err:
            if not text.eof and _maybe_truncated(err, len(text.buf)):
                if len(text.buf) - text.pos > MAX_RECORD_CHARS:
                    raise RecordError(f"{path}: {where} (line {text.line()}): longer than "
                                      f"{MAX_RECORD_CHARS} characters; split it") from None
                # Grow geometrically so a record far larger than a chunk is not re-parsed often.
                text.more(at_least=len(text.buf) - text.pos)
                continue
            line = text.line(err.pos)
            raise RecordError(f"{path}: {where} (line {line}): invalid JSON: {err.msg}") from None
        except (ValueError, RecursionError) as err:
            raise _undecodable(err, path, f"{where} (line {text.line()})") from None
        text.pos = end
        return value


def _iter_json(path: Path) -> Iterator[dict[str, Any]]:
    decoder = _DECODER
    with open(path, encoding="utf-8-sig") as f:
        text = _ChunkedText(f)
        first = text.skip_ws()
        if first == "{":
            # One object is one record; objects one after another (JSON Lines saved as .json, which
            # Hugging Face datasets also accepts) are one record each.
            number = 0
            while first == "{":
                number += 1
                yield _decode_next(text, decoder, path, f"record {number}")
                first = text.skip_ws()
            if first:
                raise RecordError(
                    f"{path}: line {text.line()}: unexpected data after record {number}; expected "
                    f"another object or the end of the file"
                )
            return
        if first != "[":
            found = "an empty file" if not first else repr(first)
            raise RecordError(
                f"{path}: line {text.line()}: expected a JSON array of records or one object, "
                f"found {found}"
            )
        text.pos += 1
        number = 0
        while True:
            ch = text.skip_ws()
            if ch == "]" and number == 0:
                text.pos += 1
                break
            number += 1
            where = f"record {number}"
            if ch == "":
                raise RecordError(f"{path}: {where} (line {text.line()}): file ends inside the array")
            if ch != "{":
                _decode_next(text, decoder, path, where)  # a syntax error is reported as such
                raise RecordError(
                    f"{path}: {where} (line {text.line()}): expected a JSON object, found {ch!r}; "
                    f"every record must be an object of named fields"
                )
            yield _decode_next(text, decoder, path, where)
            ch = text.skip_ws()
            if ch == ",":
                text.pos += 1
                continue
            if ch == "]":
                text.pos += 1
                break
            found = "the end of the file" if not ch else repr(ch)
            raise RecordError(
                f"{path}: after {where} (line {text.line()}): expected ',' or ']', found {found}"
            )
        _expect_end(text, path)


def _expect_end(text: _ChunkedText, path: Path) -> None:
    ch = text.skip_ws()
    if ch:
        raise RecordError(f"{path}: line {text.line()}: unexpected data after the top-level JSON value")


# --- CSV -------------------------------------------------------------------------------------


def _iter_csv(path: Path) -> Iterator[dict[str, Any]]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)  # long reasoning traces exceed the 128 KiB default
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        number = 0
        try:
            for row in reader:
                number += 1
                if None in row:
                    raise RecordError(
                        f"{path}: line {reader.line_num} (record {number}): more fields than the "
                        f"header's {len(reader.fieldnames or [])} columns"
                    )
                yield dict(row)
        except csv.Error as err:
            raise RecordError(f"{path}: line {reader.line_num}: invalid CSV: {err}") from None


# --- parquet ---------------------------------------------------------------------------------


def _parquet_file(path: Path) -> Any:
    import pyarrow  # lazy: keeps `nexus plan` fast
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pyarrow.ArrowException, OSError) as err:
        raise RecordError(f"{path}: not a readable parquet file ({err})") from None


def _iter_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow

    pf = _parquet_file(path)
    number = 0
    try:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield row
    except pyarrow.ArrowException as err:
        raise RecordError(f"{path}: record {number + 1}: cannot be decoded ({err})") from None


# --- plain text ------------------------------------------------------------------------------


def _has_separator_line(path: Path) -> bool:
    """Whether a blank line separates two non-blank lines anywhere in the file (streamed)."""
    with open(path, encoding="utf-8-sig") as f:
        seen_text = blank_after_text = False
        for _, line in _lines(f, path):
            if line.strip():
                if blank_after_text:
                    return True
                seen_text = True
            elif seen_text:
                blank_after_text = True
    return False


def _iter_txt(path: Path) -> Iterator[dict[str, Any]]:
    by_paragraph = _has_separator_line(path)
    with open(path, encoding="utf-8-sig") as f:
        if not by_paragraph:
            for _, line in _lines(f, path):
                text = line.rstrip("\r\n")
                if text.strip():
                    yield {"text": text}
            return
        para: list[str] = []
        size = 0
        for line_no, line in _lines(f, path):
            if line.strip():
                para.append(line.rstrip("\r\n"))
                size += len(line)
                if size > MAX_RECORD_CHARS:
                    raise RecordError(f"{path}: the paragraph ending at line {line_no} is longer than "
                                      f"{MAX_RECORD_CHARS} characters; split it")
            elif para:
                yield {"text": "\n".join(para)}
                para, size = [], 0
        if para:
            yield {"text": "\n".join(para)}
