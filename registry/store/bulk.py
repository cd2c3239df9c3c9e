"""Bulk reads and writes: COPY on PostgreSQL, executemany on SQLite, numpy on both sides.

These are the hot paths of ``train`` and ``assign``: no per-row Python objects where numpy
can do the work, and vectors land in one preallocated float32 array.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import JSON, BigInteger, Boolean, Connection, Float, Integer, SmallInteger, Table

from ..errors import InputError

_PG_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_BINARY_TRAILER = struct.pack(">h", -1)
# column type -> big-endian wire dtype for PostgreSQL binary COPY;
# subclasses first (BigInteger and SmallInteger are Integers)
_PG_FIELDS: list[tuple[type, str]] = [
    (BigInteger, ">i8"),
    (SmallInteger, ">i2"),
    (Integer, ">i4"),
    (Boolean, "u1"),
    (Float, ">f8"),
]
_COPY_CHUNK_ROWS = 200_000


def _quoted(conn: Connection, names: Iterable[str]) -> str:
    q = conn.dialect.identifier_preparer.quote
    return ", ".join(q(n) for n in names)


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict]) -> None:
    """Insert dict rows (all with the same keys): COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), list(rows))
        return
    names = list(rows[0])
    json_cols = {i for i, n in enumerate(names) if isinstance(table.c[n].type, JSON)}
    stmt = f"COPY {conn.dialect.identifier_preparer.quote(table.name)} " \
           f"({_quoted(conn, names)}) FROM STDIN"
    with conn.connection.cursor() as cur, cur.copy(stmt) as copy:
        for row in rows:
            values = [row[n] for n in names]
            for i in json_cols:
                if values[i] is not None:
                    values[i] = json.dumps(values[i])
            copy.write_row(values)


def insert_arrays(conn: Connection, table: Table, columns: dict[str, np.ndarray]) -> int:
    """Insert numeric columns given as equal-length 1-d arrays; returns the row count.

    PostgreSQL gets binary COPY built by numpy in one pass; SQLite gets one executemany.
    """
    names = list(columns)
    arrays = [np.asarray(columns[n]) for n in names]
    n = arrays[0].shape[0]
    if any(a.shape != (n,) for a in arrays):
        raise ValueError("insert_arrays needs 1-d arrays of equal length")
    if n == 0:
        return 0
    if conn.dialect.name != "postgresql":
        marks = ", ".join("?" for _ in names)
        stmt = f"INSERT INTO {table.name} ({_quoted(conn, names)}) VALUES ({marks})"
        cur = conn.connection.cursor()
        try:
            cur.executemany(stmt, zip(*(a.tolist() for a in arrays), strict=True))
        finally:
            cur.close()
        return n
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for i, (name, a) in enumerate(zip(names, arrays, strict=True)):
        col_type = table.c[name].type
        wire = next((np.dtype(w) for t, w in _PG_FIELDS if isinstance(col_type, t)), None)
        if wire is None:
            raise ValueError(f"cannot COPY column {name} of type {col_type}")
        if wire.kind == "i" and a.size and (a.min() < np.iinfo(wire).min
                                            or a.max() > np.iinfo(wire).max):
            raise ValueError(f"values of column {name} do not fit {col_type}")
        fields += [(f"len{i}", ">i4"), (f"val{i}", wire)]
    rec_type = np.dtype(fields)
    stmt = f"COPY {table.name} ({_quoted(conn, names)}) FROM STDIN (FORMAT BINARY)"
    with conn.connection.cursor() as cur, cur.copy(stmt) as copy:
        copy.write(_PG_BINARY_HEADER)
        for start in range(0, n, _COPY_CHUNK_ROWS):
            stop = min(start + _COPY_CHUNK_ROWS, n)
            rec = np.empty(stop - start, dtype=rec_type)
            rec["nfields"] = len(arrays)
            for i, a in enumerate(arrays):
                rec[f"len{i}"] = rec_type[f"val{i}"].itemsize
                rec[f"val{i}"] = a[start:stop]
            copy.write(rec.tobytes())
        copy.write(_PG_BINARY_TRAILER)
    return n


def read_vectors(conn: Connection, sql: str, params: dict, capacity: int, dim: int,
                 *, chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Run ``sql`` (selecting id, embedding bytes, embedding dtype, ordered) and return
    (ids int64 (N,), vectors float32 (N, dim)), filled into arrays preallocated for
    ``capacity`` rows (an exact count, or the query's LIMIT) and trimmed to what came.

    ``sql`` uses ``%(name)s`` placeholders on PostgreSQL and ``:name`` on SQLite.
    """
    ids = np.empty(capacity, dtype=np.int64)
    out = np.empty((capacity, dim), dtype=np.float32)
    filled = 0
    pg = conn.dialect.name == "postgresql"
    if pg:
        # A named (server-side) cursor streams; binary results skip bytea hex decoding.
        cur = conn.connection.driver_connection.cursor(name="registry_vectors", binary=True)
        cur.itersize = chunk
    else:
        cur = conn.connection.cursor()
    try:
        cur.execute(sql, params)
        while True:
            rows = cur.fetchmany(chunk)
            if not rows:
                break
            if filled + len(rows) > capacity:
                raise RuntimeError("more vectors than counted: the items changed while reading")
            _fill(out, ids, filled, rows, dim)
            filled += len(rows)
    finally:
        cur.close()
    return ids[:filled], out[:filled]


def _fill(out: np.ndarray, ids: np.ndarray, at: int, rows: list, dim: int) -> None:
    chunk_ids, blobs, dtypes = zip(*rows, strict=True)
    ids[at:at + len(rows)] = chunk_ids
    dtype = np.dtype(dtypes[0])
    if dtypes.count(dtypes[0]) == len(dtypes):
        flat = np.frombuffer(b"".join(blobs), dtype=dtype)
        if flat.size == dim * len(rows) and all(len(b) == dim * dtype.itemsize for b in blobs):
            out[at:at + len(rows)] = flat.reshape(len(rows), dim)
            return
    for offset, (blob, dt) in enumerate(zip(blobs, dtypes, strict=True)):
        vec = np.frombuffer(blob, dtype=dt)
        if vec.shape[0] != dim:
            raise InputError(f"item {chunk_ids[offset]} has a {vec.shape[0]}-d embedding, "
                             f"expected {dim}", source="database")
        out[at + offset] = vec
