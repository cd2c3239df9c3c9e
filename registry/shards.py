"""A catalog as a directory or glob of Parquet shards (``part-*.parquet``, as Spark, Ray and
Dask write them), read a record batch at a time.

Memory does not grow with the catalog: nothing holds more than one batch of rows, and a
first pass checks every shard (keys, texts, vectors) before anything is written, keeping
only a 64-bit hash per key to find duplicates across shards. Errors name the shard and the
1-based row in it.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import InputError
from .ingest import Incoming, TextSpec, check_key, jsonable, parse_vector

SUFFIXES = (".parquet", ".pq")
# rows per record batch: what one add step plans and writes (~100 MB of 384-d vectors)
BATCH_ROWS = 65536


def is_shard_set(path: str | Path) -> bool:
    """Whether ``path`` names shards (a directory, or a glob pattern) rather than a file."""
    p = Path(path)
    return p.is_dir() or (not p.exists() and any(c in str(path) for c in "*?["))


def find(path: str | Path) -> list[Path]:
    """The Parquet files of a directory (not those whose names start with ``_`` or ``.``,
    such as Spark's ``_SUCCESS``) or matching a glob pattern, sorted by name."""
    p = Path(path)
    if p.is_dir():
        found = [f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(SUFFIXES)
                 and not f.name.startswith(("_", "."))]
    else:
        found = [Path(f) for f in glob.glob(str(path))
                 if Path(f).is_file() and f.lower().endswith(SUFFIXES)]
    if not found:
        raise InputError("no Parquet files (.parquet, .pq) " +
                         ("in this directory" if p.is_dir() else "match this pattern"),
                         source=str(path))
    return sorted(found)


class ShardSet:
    """Parquet shards read as one catalog: ``key`` column, and ``text`` (a column or a
    template) or ``vector`` column, as for one file; other columns are metadata."""

    def __init__(self, path: str | Path, key: str = "key", *, text: str | None = None,
                 vector: str | None = None):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if (text is None) == (vector is None):
            raise InputError("give either `text` (a column or a template over columns) or "
                             "`vector` (a column)", source=str(path))
        self.source = str(path)
        self.paths = find(path)
        self.key, self.vector = key, vector
        self.spec = TextSpec.parse(text) if text is not None else None
        self.needed = (key, *(self.spec.fields if self.spec else (vector,)))
        self.counts = []
        for shard in self.paths:
            try:
                meta = pq.ParquetFile(shard)
            except (pa.ArrowException, OSError) as e:
                raise InputError(f"not a readable Parquet file ({e})",
                                 source=str(shard)) from None
            for col in self.needed:
                if col not in meta.schema_arrow.names:
                    raise InputError(f"no column {col!r}", source=str(shard))
            self.counts.append(meta.metadata.num_rows)
        self.rows = sum(self.counts)
        if not self.rows:
            raise InputError("no rows", source=self.source)

    def check(self, *, float16: bool = False) -> None:
        """Read every shard's key, text and vector columns once and refuse the first bad
        row, or a key found twice in any of them; with ``float16``, a vector too large to be
        stored as float16."""
        hashes = np.empty(self.rows, dtype=np.int64)
        at, dim = 0, None
        for shard, first, batch in self._batches(self.needed):
            piece = self._piece(shard, first, batch, metadata=False, dim=dim)
            if piece.vectors is not None:
                dim = piece.vectors.shape[1]
                if float16:
                    with np.errstate(over="ignore"):
                        big = np.flatnonzero(~np.isfinite(piece.vectors.astype(np.float16))
                                             .all(axis=1))
                    if big.size:
                        raise InputError("vector holds numbers too large for float16 "
                                         "storage: use `dtype` float32", source=shard,
                                         row=first + int(big[0]))
            hashes[at:at + len(piece.keys)] = [hash(k) for k in piece.keys]
            at += len(piece.keys)
        order = np.argsort(hashes, kind="stable")
        same = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
        if same.size:
            self._duplicate(set(order[same].tolist()) | set(order[same + 1].tolist()))

    def pieces(self) -> Iterator[Incoming]:
        """The catalog a record batch at a time, metadata included (after :meth:`check`)."""
        for shard, first, batch in self._batches(None):
            yield self._piece(shard, first, batch, metadata=True, dim=None)

    def _batches(self, columns: tuple[str, ...] | None):
        """(shard, 1-based row of the batch's first, record batch) through every shard."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        pool = pa.default_memory_pool()
        for shard in self.paths:
            first = 1
            with pq.ParquetFile(shard) as f:
                for batch in f.iter_batches(batch_size=BATCH_ROWS,
                                            columns=None if columns is None
                                            else list(dict.fromkeys(columns))):
                    rows = batch.num_rows
                    yield str(shard), first, batch
                    first += rows
                    # Arrow's allocator keeps what a batch freed, and a long read grows to
                    # many batches' worth (BENCHMARKS.md, Design figures: Arrow's memory
                    # between batches)
                    del batch
                    pool.release_unused()

    def _piece(self, source: str, first: int, batch, *, metadata: bool,
               dim: int | None) -> Incoming:
        n = batch.num_rows
        rows = list(range(first, first + n))
        names = batch.schema.names
        keys = [check_key(k, source, row)
                for k, row in zip(batch.column(names.index(self.key)).to_pylist(), rows,
                                  strict=True)]
        metas: list[dict | None] = [None] * n
        others = [c for c in names if c not in self.needed]
        if metadata and others:
            values = {c: batch.column(names.index(c)).to_pylist() for c in others}
            metas = [{c: jsonable(values[c][i]) for c in others} for i in range(n)]
        if self.spec is not None:
            fields = {c: batch.column(names.index(c)).to_pylist() for c in self.spec.fields}
            texts = [self.spec.render({c: fields[c][i] for c in fields}, source, rows[i])
                     for i in range(n)]
            return Incoming(source, keys, metas, rows, texts=texts)
        vectors = _vectors(batch.column(names.index(self.vector)), source, first, dim)
        return Incoming(source, keys, metas, rows, vectors=vectors)

    def _duplicate(self, positions: set[int]) -> None:
        """Raise for the first key that really is found twice among ``positions`` (rows
        whose key hashes are equal), naming both places."""
        bounds = np.cumsum([0, *self.counts])
        seen: dict[str, tuple[str, int]] = {}
        for shard, first, batch in self._batches((self.key,)):
            base = bounds[self.paths.index(Path(shard))] + first - 1
            keys = batch.column(0).to_pylist()
            for i in sorted(p - base for p in positions if base <= p < base + len(keys)):
                key = str(keys[i])
                if key in seen:
                    where, row = seen[key]
                    raise InputError(f"duplicate key {key!r} (first at {where} row {row})",
                                     source=shard, row=first + i)
                seen[key] = (shard, first + i)


def _vectors(column, source: str, first: int, dim: int | None) -> np.ndarray:
    """A list column as a float32 matrix, with the checks of one file's vectors; a column of
    text (JSON lists, or numbers separated by spaces) row by row."""
    import pyarrow as pa

    t = column.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        parsed = [parse_vector(v, source, first + i) for i, v in enumerate(column.to_pylist())]
        want = dim if dim is not None else parsed[0].size
        for i, v in enumerate(parsed):
            if v.ndim != 1 or v.size != want:
                raise InputError(f"vector has {v.size} numbers, earlier rows have {want}",
                                 source=source, row=first + i)
        return _checked(np.stack(parsed), source, first, dim)
    if column.null_count:
        row = first + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError("vector must be a non-empty list of numbers", source=source, row=row)
    if pa.types.is_fixed_size_list(t):
        lengths = np.full(len(column), t.list_size)
    else:
        lengths = np.diff(np.asarray(column.offsets))
    want = dim if dim is not None else int(lengths[0])
    odd = np.flatnonzero(lengths != want)
    if odd.size or want == 0:
        row = first + (int(odd[0]) if odd.size else 0)
        raise InputError("vector must be a non-empty list of numbers" if want == 0 else
                         f"vector has {int(lengths[row - first])} numbers, earlier rows have "
                         f"{want}", source=source, row=row)
    values = column.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise InputError("vector must be a list of numbers", source=source, row=first)
    if values.null_count:
        at = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError("vector must be a list of numbers, without nulls", source=source,
                         row=first + at // want)
    with np.errstate(over="ignore"):  # too large for float32: inf, refused below
        out = values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, want)
    return _checked(out, source, first, dim)


def _checked(out: np.ndarray, source: str, first: int, dim: int | None) -> np.ndarray:
    if dim is not None and out.shape[1] != dim:
        raise InputError(f"vector has {out.shape[1]} numbers, earlier rows have {dim}",
                         source=source, row=first)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if bad.size:
        raise InputError("vector contains NaN or infinity (or a number too large for float32)",
                         source=source, row=first + int(bad[0]))
    return np.ascontiguousarray(out)
