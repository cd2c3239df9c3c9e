"""Writing a version's IDs for downstream training jobs: Parquet, CSV or JSONL by suffix,
with the version's token vocabulary beside them."""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .ids import format_ids, format_tokens, vocabulary
from .store import assignments, lookups, seals, versions
from .store.db import Tx
from .store.versions import Version

STYLES = ("ids", "tokens")
# IDs read and written at a time
PART_ROWS = 1 << 18


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
        seal = seals.get(conn, v.number)
        about = provenance(v, seal, assignments.count(conn, v.number, exact=True), style)
        with TableWriter(path, about) as out:
            # a part at a time: a version of ten million IDs is never held whole
            for pop in lookups.population_parts(conn, v.number, rows=PART_ROWS):
                out.write(_columns(v, pop, style))
            if not out.rows:  # the columns' names, or a Parquet schema, all the same
                out.write(_columns(v, lookups.Population([], [], [], [], []), style))
            if out.rows != about["rows"]:
                raise RuntimeError(f"read {out.rows} IDs of {v.label}, counted "
                                   f"{about['rows']}")
    rows = out.rows
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

def _columns(v: Version, pop: lookups.Population, style: str) -> dict:
    """The exported columns of the IDs ``pop`` of ``v``."""
    codes = v.space.unpack(pop.codes)
    numbers = np.asarray(pop.disambs, dtype=np.int64)
    columns: dict = {"key": pop.keys, "id": format_ids(codes, numbers)}
    if style == "tokens":
        columns["tokens"] = format_tokens(codes, numbers)
    for level in range(v.space.levels):
        columns[f"level_{level + 1}"] = codes[:, level]
    columns["disambiguation"] = numbers
    columns["removed"] = pop.removed
    return columns


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
    """Write equal-length columns to ``path`` (see :class:`TableWriter`); returns rows."""
    with TableWriter(path, about) as out:
        out.write(columns)
    return out.rows


class TableWriter:
    """Writes equal-length columns to ``path`` in the format its suffix names, a part at a
    time (:meth:`write`), as one table: a Parquet file of a row group or more, or CSV or
    JSONL rows under one header. ``about`` (JSON) goes with them: in a Parquet file's
    metadata (key ``registry``), beside a CSV or JSONL file as ``PATH.json``.

    The rows go to a hidden file beside ``path``, which takes its name only when the block
    ends without an error: an export that fails part-way leaves no file that looks whole,
    and whatever was at ``path`` before stays."""

    def __init__(self, path: str | Path, about: dict | None = None):
        self.path = Path(path)
        self.format = output_format(self.path)
        if self.path.parent and not self.path.parent.exists():
            raise InputError("the folder does not exist", source=str(self.path))
        self._partial = self.path.with_name(f".{self.path.name}.partial")
        self.about, self.rows = about, 0
        self._parquet = self._file = self._csv = None
        self._schema = None

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, error_type, *_) -> None:
        try:
            with self._errors():
                for out in (self._parquet, self._file):
                    if out is not None:
                        out.close()
                if error_type is None:
                    if self.about is not None and self.format != "parquet":
                        Path(f"{self.path}.json").write_text(
                            json.dumps(self.about, indent=2) + "\n", encoding="utf-8")
                    os.replace(self._partial, self.path)
        finally:
            self._partial.unlink(missing_ok=True)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:  # pyarrow raises its OSError subclasses too
            raise InputError(f"cannot write: {e.strerror or str(e).splitlines()[0]}",
                             source=str(self.path)) from None

    def write(self, columns: dict[str, list | np.ndarray]) -> None:
        """Add rows: the same column names every time."""
        names = list(columns)
        as_lists = {k: (v.tolist() if isinstance(v, np.ndarray) else list(v))
                    for k, v in columns.items()}
        with self._errors():
            if self.format == "parquet":
                self._write_parquet(as_lists)
            else:
                self._write_text(names, as_lists)
        self.rows += len(columns[names[0]]) if names else 0

    def _write_parquet(self, as_lists: dict[str, list]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            table = pa.table(as_lists)
            if self.about is not None:
                table = table.replace_schema_metadata({"registry": json.dumps(self.about)})
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self._partial, table.schema)
        else:
            table = pa.Table.from_pydict(as_lists, schema=self._schema)
        self._parquet.write_table(table)

    def _write_text(self, names: list[str], as_lists: dict[str, list]) -> None:
        if self._file is None:
            opener = gzip.open if self.path.name.lower().endswith(".gz") else open
            self._file = opener(self._partial, "wt", encoding="utf-8", newline="")
            if self.format == "csv":
                self._csv = csv.writer(self._file)
                self._csv.writerow(names)
        rows = zip(*(as_lists[k] for k in names), strict=True)
        if self._csv is not None:
            self._csv.writerows(rows)
        else:
            for row in rows:
                self._file.write(json.dumps(dict(zip(names, row, strict=True))) + "\n")
