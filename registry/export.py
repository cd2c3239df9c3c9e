"""Writing a version's IDs for downstream training jobs: Parquet, CSV or JSONL by suffix."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np

from .errors import InputError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".jsonl.gz": "jsonl", ".csv.gz": "csv"}


def output_format(path: str | Path) -> str:
    name = Path(path).name.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    raise InputError("unknown output type: use .parquet, .csv, .csv.gz, .jsonl or .jsonl.gz",
                     source=str(path))


def write_table(path: str | Path, columns: dict[str, list | np.ndarray]) -> int:
    """Write equal-length columns to ``path`` in the format its suffix names; returns rows."""
    path = Path(path)
    fmt = output_format(path)
    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    if path.parent and not path.parent.exists():
        raise InputError("the folder does not exist", source=str(path))
    as_lists = {k: (v.tolist() if isinstance(v, np.ndarray) else list(v))
                for k, v in columns.items()}
    try:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table(as_lists), path)
            return n
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8", newline="") as f:
            rows = zip(*(as_lists[k] for k in names), strict=True)
            if fmt == "csv":
                writer = csv.writer(f)
                writer.writerow(names)
                writer.writerows(rows)
            else:
                for row in rows:
                    f.write(json.dumps(dict(zip(names, row, strict=True))) + "\n")
    except OSError as e:  # pyarrow raises its OSError subclasses too
        raise InputError(f"cannot write: {e.strerror or str(e).splitlines()[0]}",
                         source=str(path)) from None
    return n
