"""Giant files: the organizer's and the loader's peak memory and throughput as a JSONL grows.

For each size it writes one JSONL file of GSM8K-format records and measures, each in its own
subprocess (so peak memory does not carry from one measurement to the next):

- ``organize``: :func:`nexus.organize.organize` over a folder holding only that file (detect the
  format from the head, count every record, hash the file, write the manifests);
- ``load``: :func:`nexus.examples.load_examples` for ``cot`` with ``--threshold-mb`` (1024 MiB by
  default, like ``organize.stream_threshold_mb``): files up to the threshold take the in-memory
  path, larger ones the streaming path; ``--also-stream`` adds a run with the threshold at 0, so
  every size streams;
- ``read``: :func:`nexus.readers.count_records` on the file (every line parsed, nothing checked),
  the floor for the organizer and the loader, which also check and format every record;
- ``cat FILE > /dev/null``, the floor for reading the bytes;
- ``baseline``: a Python process that only imports the modules, the floor for peak RSS.

Each line and the table give the read speed in MB/s (MiB of the file per second) of the reader,
the organizer and the loader. Peak RSS is the child's ``ru_maxrss`` (from ``os.wait4``, so it
includes the interpreter); MB/s is the file size over the child's own wall time for the work
(imports excluded). Every file is read
from the page cache when the machine has the memory for it (it was just written): the figures are
CPU-bound, not disk-bound.

DERIVED DATA: the generated files are the 500 real records of
``data/samples/gsm8k/train_first500.jsonl`` repeated, with `` [derived copy N]`` appended to each
question so that every record is unique. Their answers are real; the derived questions are not
real GSM8K problems. Run on demand (not part of the test suite)::

    python benchmarks/giant_files.py --sizes-mb 100,500 --dir /tmp/nexus-giant
    python benchmarks/giant_files.py --sizes-mb 100,500,1000,2000 --also-stream --keep

Sizes are MiB (like the threshold). Files are deleted at the end unless ``--keep``; an existing
file of the right size in ``--dir`` is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples" / "gsm8k" / "train_first500.jsonl"
MB = 1 << 20
FILE_NAME = "derived_gsm8k.jsonl"


def generate(path: Path, size_mb: int) -> int:
    """Write at least ``size_mb`` MiB of derived GSM8K records to ``path``; return the record count.

    A file already there with a record-count marker and at least that size is reused.
    """
    marker = path.with_suffix(".records")
    if path.is_file() and marker.is_file() and path.stat().st_size >= size_mb * MB:
        return int(marker.read_text())
    real = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    # Each real record as a JSON line with a slot for the counter at the end of the question.
    templates = []
    for r in real:
        line = json.dumps({"question": r["question"] + " [derived copy \x00]", "answer": r["answer"]},
                          ensure_ascii=False)
        head, tail = line.split("\\u0000")
        templates.append((head, tail + "\n"))
    target, written, n = size_mb * MB, 0, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            lines = []
            for head, tail in templates:
                lines.append(f"{head}{n}{tail}")
                n += 1
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk.encode("utf-8"))
    marker.write_text(str(n))
    return n


# --- children ------------------------------------------------------------------------------------


def child(task: str, path: Path, work: Path, threshold_mb: float, eval_size: int,
          sample_size: int) -> dict:
    """One measurement in this process; prints nothing, returns what the parent reports."""
    import logging

    logging.basicConfig(level=logging.INFO, format="    %(name)s: %(message)s", stream=sys.stderr)
    from nexus.examples import load_examples
    from nexus.organize import organize
    from nexus.readers import count_records

    started = time.perf_counter()
    if task == "baseline":
        return {"seconds": 0.0}
    if task == "read":
        records = count_records(path)
        return {"seconds": time.perf_counter() - started, "records": records}
    if task == "organize":
        catalog = organize([path.parent], work / "organized")
        entry = catalog.files[0]
        seconds = time.perf_counter() - started
        if entry.status != "placed" or "cot" not in entry.capabilities:
            raise SystemExit(f"organize did not place {path} for cot: {entry.why}")
        return {"seconds": seconds, "records": entry.records}
    data = load_examples("cot", work / "organized", eval_size, sample_size, seed=42,
                         stream_threshold_mb=threshold_mb)
    return {"seconds": time.perf_counter() - started, "kept": data.kept, "train": len(data.train),
            "eval": len(data.eval)}


def run_child(task: str, path: Path, work: Path, args: argparse.Namespace,
              threshold_mb: float | None = None) -> dict:
    """Run :func:`child` in a fresh interpreter; add its peak RSS (MB) from ``os.wait4``."""
    cmd = [sys.executable, __file__, "--child", task, "--file", str(path), "--work", str(work),
           "--threshold-mb", str(args.threshold_mb if threshold_mb is None else threshold_mb),
           "--eval-size", str(args.eval_size), "--sample-size", str(args.sample_size)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{task} on {path} failed with exit code {proc.returncode}; see above")
    result = json.loads(out)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    return result


def cat_seconds(path: Path) -> float:
    """Wall time of ``cat FILE > /dev/null``."""
    started = time.perf_counter()
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


# --- parent --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", default="100,500,1000,2000",
                        help="comma-separated file sizes in MiB (default: %(default)s)")
    parser.add_argument("--dir", default="/tmp/nexus-giant-files", help="where the files are written")
    parser.add_argument("--threshold-mb", type=float, default=1024,
                        help="load_examples' stream_threshold_mb (default: %(default)s)")
    parser.add_argument("--also-stream", action="store_true",
                        help="also run the loader with the threshold at 0 (every size streams)")
    parser.add_argument("--eval-size", type=int, default=20, help="cot's eval_size (params.yaml: 20)")
    parser.add_argument("--sample-size", type=int, default=0, help="cot's sample_size (params.yaml: 0)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser


def _measure_size(size: int, root: Path, args: argparse.Namespace) -> tuple:
    """Write one file of ``size`` MiB and measure the organizer and the loader on it."""
    folder = root / f"{size}mb"
    data_dir, work = folder / "data", folder / "work"
    path = data_dir / FILE_NAME
    started = time.perf_counter()
    records = generate(path, size)
    actual_mb = path.stat().st_size / MB
    print(f"{size} MiB: {records} records, {actual_mb:.0f} MiB written in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    baseline = run_child("baseline", path, work, args)
    cat_s = cat_seconds(path)
    read = run_child("read", path, work, args)
    print(f"  read (parse only): {_speed(actual_mb, read)}", flush=True)
    org = run_child("organize", path, work, args)
    print(f"  organize: {_speed(actual_mb, org)}", flush=True)
    if org["records"] != records:
        raise SystemExit(f"the organizer counted {org['records']} records in {path}, not {records}")
    loads = [("default", run_child("load", path, work, args))]
    if args.also_stream:
        loads.append(("stream", run_child("load", path, work, args, threshold_mb=0)))
    for label, load in loads:
        print(f"  load ({label}): {_speed(actual_mb, load)}, "
              f"{load['train']} train + {load['eval']} eval of {load['kept']} kept", flush=True)
    mode = "stream" if actual_mb > args.threshold_mb else "in memory"
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return size, records, baseline, read, org, mode, loads, actual_mb / cat_s, actual_mb


def _speed(size_mb: float, result: dict) -> str:
    """``"12.3 s, 81.4 MB/s, peak RSS 25 MB"`` for one child's result on a ``size_mb`` file."""
    return (f"{result['seconds']:.1f} s, {size_mb / result['seconds']:.1f} MB/s, "
            f"peak RSS {result['peak_rss_mb']:.0f} MB")


def _print_table(rows: list[tuple], args: argparse.Namespace) -> None:
    header = ["size MiB", "records", "python floor RSS MB", "reader MB/s", "organizer peak RSS MB",
              "organizer MB/s", f"loader (threshold {args.threshold_mb:g}) path",
              "loader peak RSS MB", "loader MB/s"]
    if args.also_stream:
        header += ["loader (threshold 0, streaming) peak RSS MB", "streaming loader MB/s"]
    header.append("cat MB/s")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for size, records, baseline, read, org, mode, loads, cat_mbs, actual_mb in rows:
        cells = [str(size), str(records), f"{baseline['peak_rss_mb']:.0f}",
                 f"{actual_mb / read['seconds']:.1f}", f"{org['peak_rss_mb']:.0f}",
                 f"{actual_mb / org['seconds']:.1f}", mode]
        for _, load in loads:
            cells += [f"{load['peak_rss_mb']:.0f}", f"{actual_mb / load['seconds']:.1f}"]
        cells.append(f"{cat_mbs:.0f}")
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        result = child(args.child, Path(args.file), Path(args.work), args.threshold_mb,
                       args.eval_size, args.sample_size)
        print(json.dumps(result))
        return 0
    sizes = [int(s) for s in args.sizes_mb.split(",") if s.strip()]
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free / MB
    if sum(sizes) > 0.9 * free:
        raise SystemExit(f"{sum(sizes)} MiB of files do not fit the {free:.0f} MiB free under "
                         f"{root}; pass smaller --sizes-mb or another --dir")
    print("DERIVED DATA: real GSM8K sample records repeated with a ' [derived copy N]' suffix on "
          "each question.", flush=True)
    rows = [_measure_size(size, root, args) for size in sizes]
    print()
    _print_table(rows, args)
    if not args.keep:
        try:
            root.rmdir()  # only if the size folders were all it held
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
