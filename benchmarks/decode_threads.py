"""Decoding speed against torch's thread count: greedy tokens/s for ``torch.set_num_threads(n)``.

Measures what ``nexus chat`` and ``nexus serve`` do per reply (:func:`nexus.generation.stream.measure_stream`:
the chat template, ``model.generate`` in a background thread, greedy decoding) for each ``n`` in
1..``os.cpu_count()``, in interleaved rounds (1, 2, .., 1, 2, ..) so that a change in the machine's load
hits every ``n`` alike, and prints the median of each. The choice it informs is
:func:`nexus.serving.models.decode_threads` (``--threads`` of chat and serve; docs/serving.md).
Run on demand (not part of the test suite)::

    python benchmarks/decode_threads.py                            # the tiny random Llama (tests/tiny.py)
    python benchmarks/decode_threads.py --model models/base --tokens 32 --rounds 2
    python benchmarks/decode_threads.py --model models/capabilities/cot --threads 1,2,4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = [{"role": "user", "content": "Natalia sold clips to 48 of her friends in April, and then she sold "
                                      "half as many clips in May. How many clips did she sell altogether?"}]


def _thread_counts(text: str | None) -> list[int]:
    if not text:
        return list(range(1, (os.cpu_count() or 1) + 1))
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"error: --threads {text!r}: give comma-separated integers, e.g. 1,2,4") from None
    if any(n < 1 for n in counts):
        raise SystemExit(f"error: --threads {text!r}: every count must be at least 1")
    return counts


def measure(model_path: str, counts: list[int], tokens: int, rounds: int) -> dict[int, list[dict]]:
    """Every round decodes ``tokens`` tokens once per thread count; the runs of each count."""
    import torch

    from nexus.generation.stream import measure_stream
    from nexus.serving.models import load_chat_model

    model, tokenizer = load_chat_model(model_path, device="cpu")
    measure_stream(model, tokenizer, PROMPT, 4)  # warm-up: first-call allocations and lazy imports
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    for _ in range(rounds):
        for n in counts:
            torch.set_num_threads(n)
            runs[n].append(measure_stream(model, tokenizer, PROMPT, tokens))
    return runs


def table(runs: dict[int, list[dict]]) -> str:
    """One line per thread count: median tokens/s, time to first token and the speed against 1 thread."""
    medians = {n: statistics.median(r["tokens_per_s"] for r in rs) for n, rs in runs.items()}
    base = medians.get(1) or next(iter(medians.values()))
    lines = [f"{'threads':>7}  {'tokens/s':>9}  {'min':>7}  {'max':>7}  {'ttft_s':>7}  {'vs 1':>5}  tokens"]
    for n, rs in runs.items():
        rates = [r["tokens_per_s"] for r in rs]
        ttft = statistics.median(r["ttft_s"] for r in rs)
        lines.append(f"{n:>7}  {medians[n]:>9.2f}  {min(rates):>7.2f}  {max(rates):>7.2f}  {ttft:>7.3f}  "
                     f"{medians[n] / base if base else 0:>5.2f}  {rs[0]['tokens']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="HF folder, .gguf file or adapter folder (default: the tiny "
                                        "random Llama of tests/tiny.py, built in a temporary folder)")
    parser.add_argument("--threads", help="comma-separated counts (default: 1..os.cpu_count())")
    parser.add_argument("--tokens", type=int, default=48, help="tokens per reply (default: 48)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per thread count (default: 3)")
    args = parser.parse_args()
    counts = _thread_counts(args.threads)
    if args.tokens < 2 or args.rounds < 1:
        raise SystemExit("error: --tokens must be at least 2 and --rounds at least 1")
    with tempfile.TemporaryDirectory(prefix="decode-threads-") as tmp:
        model = args.model
        if model is None:
            from tests.tiny import build_tiny_llama

            model = str(build_tiny_llama(Path(tmp) / "tiny-llama"))
        started = time.perf_counter()
        runs = measure(model, counts, args.tokens, args.rounds)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"model {args.model or 'tiny-llama (tests/tiny.py)'}; {os.cpu_count()} CPUs; load average "
          f"{load}; {args.rounds} rounds of {args.tokens} tokens; {time.perf_counter() - started:.0f} s")
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
