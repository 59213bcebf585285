"""load_examples in streaming mode: a bounded, seeded, hash-chosen split of files above the threshold.

DERIVED DATA: every JSONL these tests write is built from the real GSM8K records of
``data/samples/gsm8k/train_first500.jsonl``, repeated, with `` [derived copy N]`` appended to each
question so that every record is unique. The answers are the real ones; the derived questions are
not real GSM8K problems. Only the record format (and the formatter's path through it) is real.

The streaming split differs from the in-memory split of the same data (a hash order instead of
``random.shuffle``); these tests never compare the two, except to show that the mode is chosen by
the threshold and that the fingerprints differ.
"""

from __future__ import annotations

import gc
import json
import logging
import tracemalloc
from pathlib import Path

import pytest

from nexus import examples
from nexus.examples import STREAM_SAMPLE_DEFAULT, load_examples, stream_reason

ROOT = Path(__file__).resolve().parents[2]
GSM8K = ROOT / "data" / "samples" / "gsm8k" / "train_first500.jsonl"
REAL = [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines() if line.strip()]


def derived_gsm8k(path: Path, n: int, repeat_each: int = 1, start: int = 0) -> Path:
    """Write ``n`` unique derived GSM8K records (copies ``start`` to ``start + n - 1``, each
    ``repeat_each`` times in a row) to ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(start, start + n):
            real = REAL[i % len(REAL)]
            record = {"question": f"{real['question']} [derived copy {i}]", "answer": real["answer"]}
            line = json.dumps(record, ensure_ascii=False) + "\n"
            for _ in range(repeat_each):
                f.write(line)
    return path


def organized(tmp_path: Path, *files: Path, name: str = "organized") -> Path:
    """An organizer output folder whose cot manifest lists ``files`` (hand-written, gsm8k format)."""
    out = tmp_path / name
    (out / "cot").mkdir(parents=True)
    manifest = {
        "capability": "cot",
        "files": [{"path": str(f), "format": "gsm8k", "kind": "math_qa", "records": None,
                   "sha256": f"derived-{f.name}"} for f in files],
    }
    (out / "cot" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


def key(example: dict) -> str:
    return json.dumps(example, sort_keys=True)


def test_streaming_split_sizes_disjoint_deterministic_and_logged(tmp_path, caplog):
    data = organized(tmp_path, derived_gsm8k(tmp_path / "derived.jsonl", 1200))
    with caplog.at_level(logging.INFO, logger="nexus.examples"):
        first = load_examples("cot", data, eval_size=25, sample_size=100, seed=3, stream_threshold_mb=0.1)
    streaming_lines = [r.getMessage() for r in caplog.records if "streaming mode" in r.getMessage()]
    again = load_examples("cot", data, eval_size=25, sample_size=100, seed=3, stream_threshold_mb=0.1)
    assert len(first.eval) == 25 and len(first.train) == 100
    assert first.kept == 1200 and not first.dropped
    assert not {key(e) for e in first.eval} & {key(e) for e in first.train}
    assert len({key(e) for e in first.eval + first.train}) == 125
    assert (first.train, first.eval, first.fingerprint) == (again.train, again.eval, again.fingerprint)
    assert first.files == [str(tmp_path / "derived.jsonl")]
    assert len(streaming_lines) == 1
    size_mb = (tmp_path / "derived.jsonl").stat().st_size / (1 << 20)
    assert f"derived.jsonl is {size_mb:.1f} MB, above stream_threshold_mb=0.1" in streaming_lines[0]
    other_seed = load_examples("cot", data, eval_size=25, sample_size=100, seed=4, stream_threshold_mb=0.1)
    assert other_seed.eval != first.eval


def test_train_and_eval_stages_agree_whatever_the_sample_size_and_file_order(tmp_path):
    a = derived_gsm8k(tmp_path / "a.jsonl", 600)
    b = tmp_path / "b.jsonl"
    b.write_text("".join(reversed(a.read_text(encoding="utf-8").splitlines(keepends=True))),
                 encoding="utf-8")
    small = load_examples("cot", organized(tmp_path, a), 30, 50, 1, stream_threshold_mb=0)
    large = load_examples("cot", organized(tmp_path, a, name="o2"), 30, 400, 1, stream_threshold_mb=0)
    reordered = load_examples("cot", organized(tmp_path, b, name="o3"), 30, 50, 1, stream_threshold_mb=0)
    assert small.eval == large.eval == reordered.eval  # held-out split: the 30 smallest keys
    assert large.train[:50] == small.train == reordered.train  # training: the next smallest
    assert not {key(e) for e in large.eval} & {key(e) for e in large.train}


def test_threshold_picks_the_mode(tmp_path):
    path = derived_gsm8k(tmp_path / "derived.jsonl", 800)  # about 0.45 MB
    data = organized(tmp_path, path)
    default = load_examples("cot", data, 20, 100, 5)  # 1024 MB: in memory
    above = load_examples("cot", data, 20, 100, 5, stream_threshold_mb=2)
    assert (above.train, above.eval, above.fingerprint) == (default.train, default.eval, default.fingerprint)
    streamed = [load_examples("cot", data, 20, 100, 5, stream_threshold_mb=t) for t in (0, 0.01, 0.4)]
    assert all((s.train, s.eval, s.fingerprint) == (streamed[0].train, streamed[0].eval,
                                                    streamed[0].fingerprint) for s in streamed)
    # The two modes are different procedures: the mode is part of the fingerprint, so resuming a
    # checkpoint across a mode change is refused as a data change.
    assert streamed[0].fingerprint != default.fingerprint
    assert stream_reason([str(path)], 2) is None
    assert "above stream_threshold_mb=0.4" in stream_reason([str(path)], 0.4)


def test_total_above_threshold_streams(tmp_path):
    # Three files of about 0.17 MB each, with distinct records.
    files = [derived_gsm8k(tmp_path / f"part{i}.jsonl", 300, start=300 * i) for i in range(3)]
    reason = stream_reason([str(f) for f in files], 0.4)
    assert reason is not None and reason.startswith("its 3 files total")
    assert stream_reason([str(files[0])], 0.4) is None
    result = load_examples("cot", organized(tmp_path, *files), 10, 40, 0, stream_threshold_mb=0.4)
    assert len(result.eval) == 10 and len(result.train) == 40 and result.kept == 900


def test_duplicates_collapse_when_streaming(tmp_path):
    data = organized(tmp_path, derived_gsm8k(tmp_path / "twice.jsonl", 100, repeat_each=2))
    result = load_examples("cot", data, 10, 500, 2, stream_threshold_mb=0)
    assert len(result.eval) + len(result.train) == 100  # the sample could hold them all
    assert len({key(e) for e in result.eval + result.train}) == 100
    assert result.kept == 100
    assert result.dropped == {"exact duplicate of an earlier record": 100}


def test_sample_size_zero_means_the_bounded_default(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(examples, "STREAM_SAMPLE_DEFAULT", 70)
    data = organized(tmp_path, derived_gsm8k(tmp_path / "derived.jsonl", 300))
    with caplog.at_level(logging.INFO, logger="nexus.examples"):
        result = load_examples("cot", data, 10, 0, 0, stream_threshold_mb=0)
    assert len(result.eval) == 10 and len(result.train) == 70 and result.kept == 300
    assert "sample_size 0 means 70 when streaming" in caplog.text
    assert STREAM_SAMPLE_DEFAULT == 10_000


def test_negative_threshold_is_refused(tmp_path):
    data = organized(tmp_path, derived_gsm8k(tmp_path / "derived.jsonl", 10))
    with pytest.raises(ValueError, match="organize.stream_threshold_mb"):
        load_examples("cot", data, 2, 5, 0, stream_threshold_mb=-1)


def _peak_bytes(data: Path, threshold_mb: float) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        result = load_examples("cot", data, 20, 200, 0, stream_threshold_mb=threshold_mb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result.eval) == 20
    return peak


def test_streaming_peak_memory_stays_flat_when_the_file_is_ten_times_larger(tmp_path):
    small = organized(tmp_path, derived_gsm8k(tmp_path / "small.jsonl", 1_500), name="small")
    large = organized(tmp_path, derived_gsm8k(tmp_path / "large.jsonl", 15_000), name="large")
    load_examples("cot", small, 20, 200, 0, stream_threshold_mb=0)  # imports outside the trace
    size_ratio = (tmp_path / "large.jsonl").stat().st_size / (tmp_path / "small.jsonl").stat().st_size
    streamed = _peak_bytes(large, 0) / _peak_bytes(small, 0)
    in_memory = _peak_bytes(large, 1024) / _peak_bytes(small, 1024)
    assert size_ratio > 9.5
    assert streamed < 1.5, f"streaming peak grew {streamed:.2f}x for a {size_ratio:.1f}x file"
    # The measurement can see growth: the in-memory path's peak grows with the file.
    assert in_memory > 5, f"in-memory peak grew only {in_memory:.2f}x"
