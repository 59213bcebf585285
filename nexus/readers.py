"""Streaming readers for the data files the organizer and the trainers consume.

Every reader yields one ``dict`` per record and keeps memory flat: JSONL and CSV are read line by
line, a JSON array is decoded incrementally over fixed-size chunks (never ``json.load`` on the
whole file), parquet is read batch by batch, and plain text paragraph by paragraph.

Supported files: ``.jsonl``/``.ndjson``, ``.json`` (a top-level array of objects, one object, or
objects one after another), ``.csv`` (with a header row), ``.parquet`` and ``.txt`` (one
``{"text": ...}`` record per paragraph separated by blank lines; per line when the file has no
blank line).

No torch and no pyarrow at import time: ``nexus plan`` imports this module.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Characters read from a .json file per chunk; tests shrink it to prove peeking stays at the head.
CHUNK_SIZE = 1 << 16
PARQUET_BATCH_ROWS = 1024
CSV_FIELD_LIMIT = 1 << 26  # characters per CSV field

JSONL_SUFFIXES = (".jsonl", ".ndjson")
SUPPORTED_SUFFIXES = (*JSONL_SUFFIXES, ".json", ".csv", ".parquet", ".txt")

_WS = " \t\r\n\ufeff"


class RecordError(ValueError):
    """A data file that cannot be read as records; the message names the file and where."""


class UnsupportedFileError(ValueError):
    """A file whose type no reader handles."""


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
        yield from reader(p)
    except UnicodeDecodeError as err:
        raise RecordError(
            f"{p}: not valid UTF-8 text near byte {err.start}; re-save the file as UTF-8"
        ) from err
    except OSError as err:
        raise RecordError(f"{p}: cannot be read ({err.strerror or err})") from err


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


# --- JSONL -----------------------------------------------------------------------------------


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8-sig") as f:
        number = 0
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue  # blank lines are tolerated (LLaMA-Factory's v1 demo has one)
            number += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(
                    f"{path}: line {line_no} (record {number}): invalid JSON: {err.msg} "
                    f"at column {err.colno}"
                ) from None
            yield _as_object(record, path, f"line {line_no} (record {number})")


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
                # Grow geometrically so a record far larger than a chunk is not re-parsed often.
                text.more(at_least=len(text.buf) - text.pos)
                continue
            line = text.line(err.pos)
            raise RecordError(f"{path}: {where} (line {line}): invalid JSON: {err.msg}") from None
        text.pos = end
        return value


def _iter_json(path: Path) -> Iterator[dict[str, Any]]:
    decoder = json.JSONDecoder()
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
        for line in f:
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
            for line in f:
                text = line.rstrip("\r\n")
                if text.strip():
                    yield {"text": text}
            return
        para: list[str] = []
        for line in f:
            if line.strip():
                para.append(line.rstrip("\r\n"))
            elif para:
                yield {"text": "\n".join(para)}
                para = []
        if para:
            yield {"text": "\n".join(para)}
