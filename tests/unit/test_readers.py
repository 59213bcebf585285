"""Streaming readers: every file type, chunked JSON arrays, and errors that name file and place."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

from nexus import readers
from nexus.readers import RecordError, UnsupportedFileError, count_records, iter_records, peek_records

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"
GSM8K = SAMPLES / "gsm8k" / "train_first500.jsonl"
ALPACA = SAMPLES / "llamafactory" / "data" / "alpaca_en_demo.json"
XLAM_PARQUET = SAMPLES / "xlam_function_calling_60k" / "hf_subset" / "data" / "train-00000-of-00001.parquet"
XLAM_JSON = SAMPLES / "xlam_function_calling_60k" / "xlam_function_calling_60k_first15.json"


# --- real sample files -------------------------------------------------------------------------


def test_jsonl_sample_peek_count_and_iter():
    head = peek_records(GSM8K, 3)
    assert len(head) == 3 and set(head[0]) == {"question", "answer"}
    assert head[0]["question"].startswith("Natalia sold clips")
    assert count_records(GSM8K) == 500
    with open(GSM8K, encoding="utf-8") as f:
        assert list(iter_records(GSM8K)) == [json.loads(line) for line in f]


def test_json_array_sample_matches_json_load():
    with open(ALPACA, encoding="utf-8") as f:
        expected = json.load(f)  # the test may load it whole; the reader never does
    assert count_records(ALPACA) == len(expected) == 999
    assert peek_records(ALPACA, 2) == expected[:2]
    assert list(iter_records(ALPACA)) == expected


def test_parquet_sample_counts_from_metadata_and_matches_json_copy():
    assert count_records(XLAM_PARQUET) == 15
    rows = list(iter_records(XLAM_PARQUET))
    by_id = {r["id"]: r for r in json.loads(XLAM_JSON.read_text(encoding="utf-8"))}
    assert [r["id"] for r in rows] == list(range(15))
    assert all(r["query"] == by_id[r["id"]]["query"] for r in rows)


def test_peek_zero_and_short_file():
    assert peek_records(GSM8K, 0) == []
    assert len(peek_records(XLAM_JSON, 100)) == 15


# --- JSON arrays read in chunks ----------------------------------------------------------------


def _big_array(path: Path, n: int) -> list[dict]:
    records = [
        {"id": i, "text": f"record {i}: braces {{}} [brackets], \"quotes\", é ü 漢字 \\ done",
         "nested": {"list": list(range(i % 7)), "flag": i % 2 == 0, "none": None}}
        for i in range(n)
    ]
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    return records


class _CountingOpen:
    """Wraps builtins.open and counts the characters read through the files it opens."""

    def __init__(self) -> None:
        self.chars = 0

    def __call__(self, *args, **kwargs):
        f = builtins.open(*args, **kwargs)  # noqa: SIM115 - a spy: the caller closes it
        outer, real_read = self, f.read

        def read(size=-1):
            data = real_read(size)
            outer.chars += len(data)
            return data

        f.read = read
        return f


def test_peek_on_large_array_reads_only_the_head(tmp_path, monkeypatch):
    path = tmp_path / "big.json"
    _big_array(path, 5000)
    size = path.stat().st_size
    assert size > 1_000_000
    monkeypatch.setattr(readers, "CHUNK_SIZE", 4096)
    counter = _CountingOpen()
    monkeypatch.setattr(readers, "open", counter, raising=False)
    head = peek_records(path, 3)
    assert [r["id"] for r in head] == [0, 1, 2]
    assert 0 < counter.chars <= 2 * 4096 + readers.SNIFF_BYTES, f"peek read {counter.chars} of {size} characters"


def test_peek_never_reaches_a_broken_tail(tmp_path):
    path = tmp_path / "truncated.json"
    good = json.dumps([{"a": i} for i in range(3)])[:-1]  # drop the closing bracket
    path.write_text(good + ", {\"a\": 3, " + "x" * (3 * readers.CHUNK_SIZE), encoding="utf-8")
    assert peek_records(path, 2) == [{"a": 0}, {"a": 1}]
    with pytest.raises(RecordError, match=r"record 4"):
        count_records(path)


def test_small_chunks_give_the_same_records(tmp_path, monkeypatch):
    path = tmp_path / "big.json"
    expected = _big_array(path, 300)
    monkeypatch.setattr(readers, "CHUNK_SIZE", 7)  # boundaries inside strings, escapes, characters
    assert list(iter_records(path)) == expected


def test_record_larger_than_a_chunk(tmp_path, monkeypatch):
    path = tmp_path / "huge_record.json"
    records = [{"text": "x" * 50_000}, {"text": "y"}]
    path.write_text(json.dumps(records), encoding="utf-8")
    monkeypatch.setattr(readers, "CHUNK_SIZE", 1024)
    assert list(iter_records(path)) == records


def test_json_single_object_and_empty_array(tmp_path):
    one = tmp_path / "one.json"
    one.write_text('\ufeff  {"text": "only"}\n', encoding="utf-8")
    assert list(iter_records(one)) == [{"text": "only"}]
    lines = tmp_path / "lines_named.json"  # JSON Lines saved as .json
    lines.write_text('{"a": 1}\n{"a": 2}\n', encoding="utf-8")
    assert list(iter_records(lines)) == [{"a": 1}, {"a": 2}]
    empty = tmp_path / "empty.json"
    empty.write_text("[ ]", encoding="utf-8")
    assert count_records(empty) == 0


# --- CSV, parquet, text written by the tests ---------------------------------------------------


def test_csv_records_and_extra_field_error(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('instruction,output\n"Say hi, please","hi"\n"multi\nline",ok\n', encoding="utf-8")
    assert list(iter_records(path)) == [
        {"instruction": "Say hi, please", "output": "hi"},
        {"instruction": "multi\nline", "output": "ok"},
    ]
    assert count_records(path) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,4,5\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"bad\.csv: line 3 \(record 2\)"):
        list(iter_records(bad))


def test_parquet_written_by_the_test_streams_in_batches(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    rows = [{"prompt": f"p{i}", "completion": f"c{i}", "label": i % 2 == 0} for i in range(7)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=3)
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 2)
    assert count_records(path) == 7
    assert list(iter_records(path)) == rows
    assert peek_records(path, 3) == rows[:3]


def test_parquet_garbage_is_a_record_error(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(RecordError, match=r"bad\.parquet: not a readable parquet file"):
        count_records(path)


def test_txt_paragraphs_and_lines(tmp_path):
    paras = tmp_path / "paras.txt"
    paras.write_text("First para\nstill first.\n\n\nSecond para.\n\n", encoding="utf-8")
    assert list(iter_records(paras)) == [{"text": "First para\nstill first."}, {"text": "Second para."}]
    lines = tmp_path / "lines.txt"
    lines.write_text("one document\nanother document\n\n", encoding="utf-8")
    assert list(iter_records(lines)) == [{"text": "one document"}, {"text": "another document"}]
    assert count_records(lines) == 2


# --- errors ------------------------------------------------------------------------------------


def test_bad_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3,,}\n', encoding="utf-8")
    assert peek_records(path, 2) == [{"a": 1}, {"a": 2}]  # the blank line is skipped
    with pytest.raises(RecordError) as err:
        count_records(path)
    message = str(err.value)
    assert str(path) in message and "line 4 (record 3)" in message and "\n" not in message
    assert isinstance(err.value, ValueError)


def test_bad_json_array_names_record_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"a": 1},\n  {"a": tru}\n]\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"bad\.json: record 2 \(line 3\): invalid JSON"):
        list(iter_records(path))


def test_non_object_records_are_rejected(tmp_path):
    arr = tmp_path / "strings.json"
    arr.write_text('["a", "b"]', encoding="utf-8")
    with pytest.raises(RecordError, match=r"record 1 .*expected a JSON object"):
        peek_records(arr, 1)
    lines = tmp_path / "numbers.jsonl"
    lines.write_text("1\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"line 1 \(record 1\): expected a JSON object, got int"):
        peek_records(lines, 1)
    scalar = tmp_path / "scalar.json"
    scalar.write_text("42", encoding="utf-8")
    with pytest.raises(RecordError, match=r"expected a JSON array of records or one object"):
        peek_records(scalar, 1)


def test_missing_separator_and_trailing_data(tmp_path):
    path = tmp_path / "nosep.json"
    path.write_text('[{"a": 1} {"a": 2}]', encoding="utf-8")
    with pytest.raises(RecordError, match=r"after record 1 .*expected ',' or ']'"):
        list(iter_records(path))
    trailing = tmp_path / "trailing.json"
    trailing.write_text('[{"a": 1}] [', encoding="utf-8")
    with pytest.raises(RecordError, match=r"unexpected data after the top-level JSON value"):
        list(iter_records(trailing))
    after_object = tmp_path / "after_object.json"
    after_object.write_text('{"a": 1}\n{"a": 2} x', encoding="utf-8")
    with pytest.raises(RecordError, match=r"line 2: unexpected data after record 2"):
        list(iter_records(after_object))


def test_csv_fields_longer_than_the_default_limit(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("question,thinking_trajectory\nq," + "t" * 200_000 + "\n", encoding="utf-8")
    assert len(next(iter_records(path))["thinking_trajectory"]) == 200_000


def test_invalid_utf8_and_unsupported_type(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"text": "café"}\n'.encode("latin-1"))
    with pytest.raises(RecordError, match=r"latin1\.jsonl: not valid UTF-8"):
        list(iter_records(path))
    other = tmp_path / "data.xlsx"
    other.write_bytes(b"PK")
    with pytest.raises(UnsupportedFileError, match=r"unsupported file type '\.xlsx'"):
        peek_records(other, 1)


# --- memory stays flat as the file grows ---------------------------------------------------------


def _write_derived(path: Path, n: int) -> None:
    """DERIVED DATA: the real GSM8K sample records repeated with a unique suffix on each question,
    written as JSONL, as one JSON array or as CSV (by the suffix of ``path``)."""
    real = [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines()]
    rows = ({"question": f"{r['question']} [derived copy {i}]", "answer": r["answer"]}
            for i, r in ((i, real[i % len(real)]) for i in range(n)))
    with open(path, "w", encoding="utf-8", newline="") as f:
        if path.suffix == ".jsonl":
            f.writelines(json.dumps(r) + "\n" for r in rows)
        elif path.suffix == ".json":
            f.write("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
        else:
            import csv

            writer = csv.DictWriter(f, fieldnames=["question", "answer"])
            writer.writeheader()
            writer.writerows(rows)


def _count_peak(path: Path) -> tuple[int, int]:
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        n = count_records(path)
        return n, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_counting_keeps_memory_flat_as_the_file_grows_tenfold(tmp_path, suffix):
    small, large = tmp_path / f"small{suffix}", tmp_path / f"large{suffix}"
    _write_derived(small, 1_000)
    _write_derived(large, 10_000)
    count_records(small)  # warm up (csv's field limit, codecs) outside the trace
    (n_small, peak_small), (n_large, peak_large) = _count_peak(small), _count_peak(large)
    assert (n_small, n_large) == (1_000, 10_000)
    assert large.stat().st_size > 9.5 * small.stat().st_size
    assert peak_large < 1.5 * peak_small, f"peak {peak_small} -> {peak_large} bytes"


# --- strict about what is text and what is JSON ------------------------------------------------


def test_nan_and_infinity_are_not_json(tmp_path):
    """Python's json reads NaN/Infinity; JSON (RFC 8259) has neither, so the record is refused."""
    lines = tmp_path / "nan.jsonl"
    lines.write_text('{"a": 1}\n{"a": NaN}\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"nan\.jsonl: line 2 \(record 2\): NaN is not valid JSON"):
        count_records(lines)
    array = tmp_path / "inf.json"
    array.write_text('[{"a": 1}, {"a": [-Infinity]}]', encoding="utf-8")
    with pytest.raises(RecordError, match=r"inf\.json: record 2 \(line 1\): -Infinity is not valid JSON"):
        count_records(array)


def test_deep_nesting_is_a_record_error_not_a_recursion_error(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    lines = tmp_path / "deep.jsonl"
    lines.write_text('{"a": 1}\n{"a": ' + deep + "}\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"deep\.jsonl: line 2 \(record 2\): nested too deeply"):
        count_records(lines)
    array = tmp_path / "deep.json"
    array.write_text('[{"a": 1}, {"a": ' + deep + "}]", encoding="utf-8")
    with pytest.raises(RecordError, match=r"deep\.json: record 2 \(line 1\): nested too deeply"):
        count_records(array)
    huge = tmp_path / "int.jsonl"
    huge.write_text('{"a": ' + "9" * 5000 + "}\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"record 1\): cannot be decoded \(Exceeds the limit"):
        count_records(huge)


@pytest.mark.parametrize(("data", "message"), [
    ('{"a": 1}\n'.encode("utf-16"), r"UTF-16 text; re-save it as UTF-8"),
    ('{"a": 1}\n'.encode("utf-16-be"), r"UTF-16 text without a byte-order mark"),
    ('{"a": 1}\n'.encode("utf-32"), r"UTF-32 text; re-save it as UTF-8"),
    (b'{"a": 1}\n\x00\x00\x17garbage', r"binary, not text \(a NUL byte at byte 9\)"),
    (bytes(range(1, 9)) * 50 + b"\n", r"binary, not text \(400 control characters in its first 401 bytes\)"),
])
def test_binary_and_utf16_files_are_refused_by_their_head(tmp_path, data, message):
    for suffix in (".jsonl", ".txt", ".csv", ".json"):
        path = tmp_path / f"file{suffix}"
        path.write_bytes(data)
        with pytest.raises(RecordError, match=rf"file\{suffix}: {message}"):
            peek_records(path, 1)


def test_text_with_tabs_form_feeds_and_ansi_colours_is_still_text(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("first\tpage \x1b[1mbold\x1b[0m\n\x0c\nsecond page\r\n", encoding="utf-8")
    assert [r["text"] for r in iter_records(path)] == ["first\tpage \x1b[1mbold\x1b[0m", "second page"]


def test_a_line_or_record_over_the_limit_is_refused_before_it_is_held(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_RECORD_CHARS", 1000)
    monkeypatch.setattr(readers, "CHUNK_SIZE", 64)
    ok = json.dumps({"text": "x" * 900})
    long = json.dumps({"text": "y" * 5000})
    for name, body, where in (("a.jsonl", f"{ok}\n{long}\n", "line 2"),
                              ("a.txt", f"{'x' * 900}\n{'y' * 5000}\n", "line 2"),
                              ("a.json", f"[{ok}, {long}]", "record 2")):
        path = tmp_path / name
        path.write_text(body, encoding="utf-8")
        if name != "a.txt":  # a .txt is read through once first, to find its paragraph breaks
            assert len(peek_records(path, 1)) == 1
        with pytest.raises(RecordError, match=rf"{where}.*longer than 1000 characters"):
            count_records(path)


def test_why_no_records(tmp_path):
    csv_file = tmp_path / "h.csv"
    csv_file.write_text("question,answer\n", encoding="utf-8")
    assert count_records(csv_file) == 0
    assert readers.why_no_records(csv_file) == "a header row (question, answer) and no records"
    wide = tmp_path / "w.csv"
    wide.write_text(",".join(f"c{i}" for i in range(9)) + "\n", encoding="utf-8")
    assert readers.why_no_records(wide) == "a header row (c0, c1, c2, c3, c4, c5 and 3 more) and no records"
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    assert readers.why_no_records(empty) == "the file is empty"
    array = tmp_path / "a.json"
    array.write_text("[ ]", encoding="utf-8")
    assert count_records(array) == 0
    assert readers.why_no_records(array) == "no records in it (only whitespace or an empty array)"


def test_jsonl_lines_starting_like_an_object_keep_the_strict_errors(tmp_path):
    """The one-``raw_decode`` path for a line that is one object must not accept what the strict
    decoder refuses, nor change its message."""
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"a": 1}  \t\n  {"b": [2]}\n{"c": "\\u2028"}', encoding="utf-8")
    assert list(iter_records(ok)) == [{"a": 1}, {"b": [2]}, {"c": "\u2028"}]
    cases = {
        '{"a": 1}\x0b\n': r"line 2 \(record 2\): invalid JSON: Extra data \(column 9\)",  # not JSON whitespace
        '{"a": 1} {"b": 2}\n': r"line 2 \(record 2\): invalid JSON: Extra data \(column 10\)",
        '{"a": NaN}\n': r"line 2 \(record 2\): NaN is not valid JSON",
        '{"a": 1,}\n': r"line 2 \(record 2\): invalid JSON: Expecting property name",
        '{"a": ': r"line 2 \(record 2\): invalid JSON: Expecting value \(column 7\)",  # no final break
    }
    for i, (line, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.jsonl"
        path.write_text('{"x": 0}\n' + line, encoding="utf-8")
        with pytest.raises(RecordError, match=message):
            list(iter_records(path))
