"""The metrics tracker: every run appends one row to ``results/<kind>.csv``.

Columns are the union of all rows written so far; a new column rewrites the header (via a temp
file and rename), so older rows keep their values and files stay valid CSV.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from nexus.paths import RESULTS_DIR


def append_row(kind: str, row: dict[str, Any], results_dir: str | os.PathLike[str] = RESULTS_DIR) -> Path:
    """Append ``row`` to ``results_dir/<kind>.csv`` and return the file path."""
    path = Path(results_dir) / f"{kind}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            if not set(row) <= set(columns):
                rows = list(reader)
    new_columns = columns + [key for key in row if key not in columns]
    if new_columns == columns and columns:
        with path.open("a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=columns).writerow(row)
        return path
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=new_columns)
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow(row)
    os.replace(tmp, path)
    return path
