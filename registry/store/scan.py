"""Items' vectors read a part at a time: the live items of one embedding space, which a
chunked train (:mod:`registry.chunked`) reads instead of every vector at once, and the items
of a version (a population), which ``stats`` and ``drift`` read.

The ids come first (8 bytes an item); a row is then an item's position among them, and its
vector is read by id range (a chunk) or by id list (a sample, the rows nearest-free moves).
The caller holds one read transaction throughout, so every read sees the same items.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sqlalchemy import Connection

from . import items
from .bulk import int_list, read_vectors
from .items import Space

# ids fetched per statement while listing them, and per IN list while reading rows by id
IDS_PER_READ = 1_000_000
IDS_PER_LIST = 8192


class Vectors:
    """The items ``ids`` (sorted) as rows of float32 vectors of ``dim`` (a
    :class:`registry.chunked.Rows`), read through ``from_where`` (SQL over ``items i``
    ending in WHERE conditions, with ``params``), which selects those items among all."""

    def __init__(self, conn: Connection, ids: np.ndarray, dim: int,
                 from_where: str = items.LIVE_FROM, params: dict | None = None) -> None:
        self.conn, self.ids, self.dim = conn, ids, dim
        self.n = int(ids.size)
        self.from_where, self.params = from_where, params or {}

    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, vectors) of every ``size`` rows in turn, read into one reused
        buffer: each chunk is overwritten by the next."""
        buffer = np.empty((min(size, self.n), self.dim), dtype=np.float32)
        for start in range(0, self.n, size):
            stop = min(self.n, start + size)
            yield start, self.rows(start, stop, out=buffer[:stop - start])

    def rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """The vectors of rows ``start`` up to ``stop`` (an id range), into ``out`` where
        given."""
        if stop <= start:
            return np.empty((0, self.dim), dtype=np.float32)
        return self._read(self.from_where, self.ids[start:stop],
                          bounds=(int(self.ids[start]), int(self.ids[stop - 1])), out=out)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of the rows at the sorted positions ``rows`` (by id list)."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for at in range(0, len(rows), IDS_PER_LIST):
            ids = self.ids[rows[at:at + IDS_PER_LIST]]
            self._read(f"{self.from_where} AND i.id IN ({','.join(map(str, ids.tolist()))})",
                       ids, listed=True, out=out[at:at + ids.size])
        return out

    def take_any(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`take` of positions in any order."""
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        out[order] = self.take(np.asarray(rows)[order])
        return out

    def _read(self, from_where: str, expect: np.ndarray, **how) -> np.ndarray:
        # vectors by id ranges or lists of the table itself (through the space's index each
        # row would be a lookup of its own), each read checked against the ids listed
        ids, vectors = read_vectors(self.conn, from_where, self.params, expect.size, self.dim,
                                    **how)
        if not np.array_equal(ids, expect):
            raise RuntimeError("the items changed while they were read")
        return vectors


class LiveVectors(Vectors):
    """The live items of ``space`` in id order (see :class:`Vectors`)."""

    def __init__(self, conn: Connection, space: Space) -> None:
        self.conn, self.space = conn, space
        super().__init__(conn, self._ids(), space.dim)

    def _ids(self) -> np.ndarray:
        """Listed through the partial index of the space's live items (no item row read),
        a million at a time, joined by the database into one text each."""
        pg = self.conn.dialect.name == "postgresql"
        joined = "string_agg(id::text, ',')" if pg else "group_concat(id)"
        parts, last = [], -1
        while True:
            where, params = items.in_space(self.conn, self.space, last)
            got = int_list(self.conn.exec_driver_sql(
                f"SELECT {joined} FROM (SELECT i.id AS id {where} ORDER BY i.id "
                f"LIMIT {IDS_PER_READ}) AS part", params).scalar())
            if got.size:
                got.sort()  # the aggregate's order is not promised
                parts.append(got)
                last = int(got[-1])
            if got.size < IDS_PER_READ:
                break
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
