"""Writing a version's IDs for downstream training jobs: Parquet, CSV or JSONL by suffix,
with the version's token vocabulary beside them."""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .ids import format_ids, format_tokens, vocabulary
from .store import lookups, seals, versions
from .store.db import Tx
from .store.versions import Version

STYLES = ("ids", "tokens")


@dataclass
class ExportResult:
    """An export: the version, the file and its rows, the ID style, and the vocabulary file
    with its number of tokens (None and 0 without one)."""

    version: int
    path: str
    rows: int
    style: str
    vocab: str | None
    tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


def export(tx: Tx, ref: str | int | None, path: str | Path, *, style: str = "ids",
           vocab: str | Path | None = None) -> ExportResult:
    """Every item's key, ID (or tokens), codes, disambiguation number and whether it was
    removed, in ``ref``'s version, to ``path``; its vocabulary (:func:`registry.ids.vocabulary`,
    up to the version's disambiguation limit) to ``vocab``."""
    if style not in STYLES:
        raise InputError(f"style must be ids or tokens, got {style!r}", param="style")
    output_format(path)
    with tx(write=False) as conn:
        v = versions.resolve(conn, ref)
        pop = lookups.population(conn, v.number, by_id=True)
        seal = seals.get(conn, v.number)
    codes = v.space.unpack(pop.codes)
    numbers = np.asarray(pop.disambs, dtype=np.int64)
    columns: dict = {"key": pop.keys, "id": format_ids(codes, numbers)}
    if style == "tokens":
        columns["tokens"] = format_tokens(codes, numbers)
    for level in range(v.space.levels):
        columns[f"level_{level + 1}"] = codes[:, level]
    columns["disambiguation"] = numbers
    columns["removed"] = pop.removed
    rows = write_table(path, columns, provenance(v, seal, len(pop.keys), style))
    tokens = 0
    if vocab is not None:
        words = vocabulary(v.space.sizes, v.max_disambiguation)
        try:
            Path(vocab).write_text("\n".join(words) + "\n", encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot write: {e.strerror}", source=str(vocab)) from None
        tokens = len(words)
    return ExportResult(v.number, str(path), rows, style,
                        None if vocab is None else str(vocab), tokens)

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".jsonl.gz": "jsonl", ".csv.gz": "csv"}


def provenance(v: Version, seal: seals.Seal | None, rows: int, style: str) -> dict:
    """What an exported file says of where its IDs come from: the registry, the version (its
    number, name, state, code space, limit and vocabulary size) and its seal, which
    ``registry verify`` checks (None for a draft, whose IDs may still change)."""
    from .version import __version__

    return {"registry": __version__, "version": v.number, "name": v.name, "state": v.state,
            "codebook_sizes": list(v.space.sizes), "residual": v.residual,
            "max_disambiguation": v.max_disambiguation, "vocabulary_tokens": v.vocabulary_size,
            "seal": None if seal is None else {
                "codebooks_sha256": seal.codebooks_sha256, "ids": seal.count,
                "frozen_count": seal.frozen_count, "frozen_digest": seal.frozen_digest,
                "grown_count": seal.grown_count, "grown_digest": seal.grown_digest},
            "rows": rows, "style": style}


def output_format(path: str | Path) -> str:
    name = Path(path).name.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    raise InputError("unknown output type: use .parquet, .csv, .csv.gz, .jsonl or .jsonl.gz",
                     source=str(path))


def write_table(path: str | Path, columns: dict[str, list | np.ndarray],
                about: dict | None = None) -> int:
    """Write equal-length columns to ``path`` in the format its suffix names; returns rows.
    ``about`` (JSON) goes with them: in a Parquet file's metadata (key ``registry``),
    beside a CSV or JSONL file as ``PATH.json``."""
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

            table = pa.table(as_lists)
            if about is not None:
                table = table.replace_schema_metadata({"registry": json.dumps(about)})
            pq.write_table(table, path)
            return n
        if about is not None:
            Path(f"{path}.json").write_text(json.dumps(about, indent=2) + "\n",
                                            encoding="utf-8")
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
