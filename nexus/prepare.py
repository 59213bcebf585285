"""The split as an artifact: ``prepare@<cap>`` formats a capability's records once and writes them.

The prepare stage reads the capability's organized files (:mod:`nexus.examples`), drops the
training examples whose chat rendering is longer than ``max_length`` tokens, and writes
``data/prepared/<cap>/``:

- ``train.jsonl`` and ``eval.jsonl``: the formatted training and held-out examples, one per line;
- ``stats.json``: records kept, drop counts with their reasons, the data fingerprint and the
  source files;
- ``settings.json``: the capability's resolved settings (params.yaml defaults, overrides and quick
  mode applied), so that train and eval read what prepare resolved.

Train, eval and report read this folder (:func:`read_split`); ``nexus organize --preview`` builds
the same split in memory with :func:`build_split`. Because train@<cap> depends on these files and
not on params.yaml, editing a default reruns every prepare stage (seconds) but retrains only the
capabilities whose resolved settings or examples changed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus import paths
from nexus.atomic import atomic_dir, write_json_atomic, write_text_atomic
from nexus.chat import token_ids
from nexus.config import CapabilityParams, Params, capability_params
from nexus.examples import capability_examples
from nexus.loading import load_tokenizer
from nexus.methods import capability_from_dict

log = logging.getLogger(__name__)

TRAIN_FILE, EVAL_FILE, STATS_FILE, SETTINGS_FILE = "train.jsonl", "eval.jsonl", "stats.json", "settings.json"


class PreparedDataError(ValueError):
    """A prepared split is missing or unreadable; the message says what to run."""


@dataclass
class PreparedSplit:
    """One capability's formatted examples, split, with what was dropped and the settings used.

    Attributes:
        capability: registry name.
        train: training examples that fit ``max_length``.
        eval: held-out examples (never trained on).
        settings: the capability's resolved settings.
        stats: ``kept``, ``dropped`` (reason -> count, ``longer than max_length=N`` included),
            ``fingerprint`` (of the files and the split), ``files`` (the source files).
    """

    capability: str
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    settings: CapabilityParams
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Identifies the source files and the split (part of a checkpoint's schedule)."""
        return str(self.stats.get("fingerprint", ""))

    @property
    def dropped(self) -> dict[str, int]:
        """Drop counts by reason: formatter rejections, duplicates, examples over ``max_length``."""
        return dict(self.stats.get("dropped", {}))


def drop_long(examples: list[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[list, int]:
    """Keep examples whose full chat rendering fits ``max_length`` tokens; count the others."""
    kept = [example for example in examples if len(token_ids(example, tokenizer)) <= max_length]
    return kept, len(examples) - len(kept)


def build_split(capability: str, params: Params, organized_dir: str | Path, tokenizer: Any) -> PreparedSplit:
    """Format and split a capability's records and drop over-long training examples, in memory.

    Raises:
        NoDataError: the capability has no manifest or no usable record.
    """
    settings = capability_params(params, capability)
    data = capability_examples(capability, params, organized_dir)
    train, too_long = drop_long(data.train, tokenizer, settings.max_length)
    dropped = dict(data.dropped)
    if too_long:
        dropped[f"longer than max_length={settings.max_length}"] = too_long
    stats = {"kept": data.kept, "train": len(train), "eval": len(data.eval), "dropped": dropped,
             "fingerprint": data.fingerprint, "files": data.files}
    return PreparedSplit(capability, train, data.eval, settings, stats)


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)


def write_split(split: PreparedSplit, out_dir: str | Path) -> Path:
    """Write the split's four files to ``out_dir`` as one atomic step; returns ``out_dir``."""
    with atomic_dir(out_dir) as tmp:
        write_text_atomic(_jsonl(split.train), tmp / TRAIN_FILE)
        write_text_atomic(_jsonl(split.eval), tmp / EVAL_FILE)
        write_json_atomic({"capability": split.capability, **split.stats}, tmp / STATS_FILE)
        write_json_atomic(split.settings.to_dict(), tmp / SETTINGS_FILE)
    return Path(out_dir)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                raise PreparedDataError(f"{path}:{number}: not JSON ({err}); rerun the prepare stage") from err
    return rows


def read_split(folder: str | Path) -> PreparedSplit:
    """Read a split the prepare stage wrote.

    Raises:
        PreparedDataError: the folder or one of its files is missing or unreadable.
    """
    root = Path(folder)
    missing = [name for name in (TRAIN_FILE, EVAL_FILE, STATS_FILE, SETTINGS_FILE) if not (root / name).is_file()]
    if missing:
        raise PreparedDataError(f"{root}: no prepared split ({', '.join(missing)} missing); run "
                                f"`dvc repro prepare@{root.name}` (or `nexus prepare --capability {root.name}`)")
    try:
        stats = json.loads((root / STATS_FILE).read_text(encoding="utf-8"))
        settings = json.loads((root / SETTINGS_FILE).read_text(encoding="utf-8"))
    except ValueError as err:  # ParamsError (a ValueError) from a stale settings.json reads the same
        raise PreparedDataError(f"{root}: unreadable stats or settings ({err}); rerun the prepare stage") from err
    capability = stats.pop("capability", root.name)
    return PreparedSplit(capability, _read_jsonl(root / TRAIN_FILE), _read_jsonl(root / EVAL_FILE),
                         capability_from_dict(settings, str(root / SETTINGS_FILE)), stats)


def run_prepare(capability: str, params: Params, organized_dir: str | Path = paths.ORGANIZED_DIR,
                out_dir: str | Path | None = None) -> PreparedSplit:
    """The prepare stage: build the split with the base model's tokenizer and write it."""
    split = build_split(capability, params, organized_dir, load_tokenizer(params.base.model))
    out = write_split(split, out_dir or paths.prepared_dir(capability))
    log.info("%s: %d training and %d held-out examples in %s; dropped: %s", capability, len(split.train),
             len(split.eval), out, split.dropped or "none")
    return split


def split_for(capability: str, params: Params, prepared: str | Path | None,
              organized_dir: str | Path = paths.ORGANIZED_DIR, tokenizer: Any = None) -> PreparedSplit:
    """The split a stage works on: read from ``prepared`` (what the DAG passes), else built in
    memory from ``params`` (a direct ``nexus train``/``nexus eval`` run without ``--prepared``)
    with ``tokenizer`` (default: the base model's, loaded here)."""
    if prepared:
        return read_split(prepared)
    return build_split(capability, params, organized_dir, tokenizer or load_tokenizer(params.base.model))
