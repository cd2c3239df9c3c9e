"""Bulk reads and writes: COPY on PostgreSQL, executemany on SQLite, numpy on both sides.

These are the hot paths of ``train`` and ``assign``: no per-row Python objects where numpy
can do the work, and vectors land in one preallocated float32 array.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Float,
    Integer,
    SmallInteger,
    Table,
    exc,
)
from sqlalchemy.sql.elements import ColumnElement

from ..errors import InputError, RegistryError
from .lookups import driver_cursor

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
_EXECUTEMANY_ROWS = 200_000


def _copy(cur, stmt: str, params=None):
    """psycopg 3's COPY of ``stmt`` on the driver cursor ``cur``."""
    if not hasattr(cur, "copy"):  # psycopg2: a lookups-only Registry (db.make_engine), or
        # a postgresql+psycopg2:// URL
        raise RegistryError("bulk reads and writes need psycopg 3: a postgresql:// URL, and a "
                            "Registry not opened for lookups only")
    return cur.copy(stmt) if params is None else cur.copy(stmt, params)


def _quoted(conn: Connection, names: Iterable[str]) -> str:
    q = conn.dialect.identifier_preparer.quote
    return ", ".join(q(n) for n in names)


def int_list(text: str | None) -> np.ndarray:
    """Integers the database joined into one comma-separated text (``group_concat`` /
    ``string_agg``): far faster than fetching the rows one by one (BENCHMARKS.md, Design
    figures: joined integer lists)."""
    return np.empty(0, dtype=np.int64) if not text else \
        np.fromstring(text, dtype=np.int64, sep=",")


def pg_array(values: Sequence[int]) -> str:
    """PostgreSQL: integers as one array literal, for a ``CAST(... AS bigint[])``
    parameter. psycopg adapts a list element by element; the server parses this text far
    faster (BENCHMARKS.md, Design figures: bigint[] as one literal)."""
    return "{" + ",".join(map(str, values)) + "}"


def in_list(conn: Connection, column: ColumnElement, values: list[int]) -> ColumnElement:
    """``column IN values``: on PostgreSQL as ``= ANY`` of one bigint[] parameter."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy import any_, bindparam, cast
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(cast(bindparam(None, pg_array(values)), ARRAY(BigInteger)))
    return column.in_(values)


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
    with driver_cursor(conn, stmt) as cur, _copy(cur, stmt) as copy:
        for row in rows:
            values = [row[n] for n in names]
            for i in json_cols:
                if values[i] is not None:
                    values[i] = json.dumps(values[i])
            copy.write_row(values)


def insert_arrays(conn: Connection, table: Table, columns: dict[str, np.ndarray], *,
                  into: str | None = None, freeze: bool = False) -> int:
    """Insert numeric columns given as equal-length 1-d arrays; returns the row count.

    PostgreSQL gets binary COPY built by numpy in one pass, into the table ``into`` (of
    ``table``'s columns) where given, ``FREEZE`` for a table made in this transaction;
    SQLite gets rows packed into one statement where they fit, else executemany (see
    :func:`_sqlite_insert`).
    """
    names = list(columns)
    arrays = [np.asarray(columns[n]) for n in names]
    n = arrays[0].shape[0]
    if any(a.shape != (n,) for a in arrays):
        raise ValueError("insert_arrays needs 1-d arrays of equal length")
    if n == 0:
        return 0
    if conn.dialect.name != "postgresql":
        _sqlite_insert(conn, table, names, arrays)
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
    stmt = f"COPY {into or table.name} ({_quoted(conn, names)}) FROM STDIN (FORMAT BINARY" \
           + (", FREEZE)" if freeze else ")")
    with driver_cursor(conn, stmt) as cur, _copy(cur, stmt) as copy:
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


def _has_json_each(conn: Connection) -> bool:
    """Whether this SQLite has ``json_each`` (built in since 3.38, an option before)."""
    try:
        conn.exec_driver_sql("SELECT count(*) FROM json_each('[1]')").scalar()
    except exc.OperationalError:
        return False
    return True


def _sqlite_insert(conn: Connection, table: Table, names: list[str],
                   arrays: list[np.ndarray]) -> None:
    """SQLite: insert equal-length columns, a part of _EXECUTEMANY_ROWS rows at a time.

    An integer column with one value throughout goes into the statement itself: each
    parameter less per row saves a Python object and a bind (BENCHMARKS.md, Design figures:
    constant columns in the statement). Where the other columns are integers whose bits fit
    in one 63-bit number together, each row is packed into one and a part goes in as one
    statement over ``json_each`` of their list, unpacked by shifts: no Python object or bind
    per row, about half the time of executemany (BENCHMARKS.md, Design figures: packed rows
    through json_each). Other columns (floats, negative numbers, wider values) go through
    executemany."""
    n = arrays[0].shape[0]
    same = [a.dtype.kind in "biu" and bool((a == a[0]).all()) for a in arrays]
    marks = [str(int(a[0])) if one else "?" for a, one in zip(arrays, same, strict=True)]
    varying = [a for a, one in zip(arrays, same, strict=True) if not one]
    widths = [int(a.max()).bit_length() if a.dtype.kind in "biu" and a.min() >= 0 else 64
              for a in varying]
    packed = None
    if varying and sum(widths) <= 63 and _has_json_each(conn):
        packed = np.zeros(n, dtype=np.int64)
        shift = 0
        for a, width in zip(varying, widths, strict=True):
            packed |= a.astype(np.int64) << shift
            marks[marks.index("?")] = f"((value >> {shift}) & {(1 << width) - 1})"
            shift += width
    columns = _quoted(conn, names)
    if packed is not None:
        stmt = (f"INSERT INTO {table.name} ({columns}) SELECT {', '.join(marks)} "
                "FROM json_each(?)")
    else:
        stmt = f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join(marks)})"
    with driver_cursor(conn, stmt) as cur:
        # a part at a time: the text (or a Python int per value) of ten million rows is
        # gigabytes
        for start in range(0, n, _EXECUTEMANY_ROWS):
            stop = min(n, start + _EXECUTEMANY_ROWS)
            if packed is not None:
                cur.execute(stmt, ("[" + ",".join(map(str, packed[start:stop].tolist()))
                                   + "]",))
            elif varying:
                cur.executemany(stmt, zip(*(a[start:stop].tolist() for a in varying),
                                          strict=True))
            else:
                cur.executemany(stmt, [()] * (stop - start))


def read_vectors(conn: Connection, from_where: str, params: dict, capacity: int, dim: int,
                 *, limit: int | None = None, span: int = 8192,
                 bounds: tuple[int, int] | None = None, listed: bool = False,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``SELECT i.id, i.embedding ... {from_where} ORDER BY i.id [LIMIT]`` into
    (ids int64 (N,), vectors float32 (N, dim)), arrays preallocated for ``capacity`` rows
    (an exact count, or the LIMIT) and trimmed to what came; the vectors into ``out`` where
    given (``capacity`` rows of ``dim``).

    ``from_where`` names the items table ``i``, ends with its WHERE conditions, and uses
    ``%(name)s`` placeholders on PostgreSQL, ``:name`` on SQLite. ``bounds`` (the lowest
    and highest id to read) keeps to those ids, and ``listed`` (conditions that name the ids
    one by one) reads them in one statement on SQLite.
    """
    ids = np.empty(capacity, dtype=np.int64)
    fresh = out is None  # a caller's array has its pages already
    if fresh:
        out = np.empty((capacity, dim), dtype=np.float32)
    with Prefault(out, touch=fresh) as prefault:
        if conn.dialect.name == "postgresql":
            tail = "" if limit is None else f" LIMIT {int(limit)}"
            if bounds is not None:
                from_where += f" AND i.id >= {int(bounds[0])} AND i.id <= {int(bounds[1])}"
            sql = f"SELECT i.id, i.embedding {from_where} ORDER BY i.id{tail}"
            filled = _CopyReader(ids, out, prefault).run(conn, sql, params)
        else:
            reader = _SqliteReader(ids, out, prefault)
            if listed:
                reader.once(conn, from_where, params)
            elif limit is None:
                # (the range in each statement only: SQLite walks the ids of the first
                # range its plan finds, which a range of the whole read would be)
                reader.ranges(conn, from_where, params, span, bounds)
            else:
                reader.pieces(conn, from_where, params, limit, span)
            filled = reader.filled
    return ids[:filled], out[:filled]


class _SqliteReader:
    """Reads SQLite vectors into the preallocated arrays, ``span`` rows at most at a time,
    each such piece as one row: the ids and the float32 embeddings joined by the database
    (``group_concat``) and parsed by numpy. Row by row, each vector costs a Python tuple and
    bytes object: slower than the joined read, for a whole catalog and for a batch of assign
    alike (BENCHMARKS.md, Design figures: SQLite joined reads). A piece holding any other
    embedding (float16, another length) is read again row by row.

    :meth:`once` reads them in one statement; :meth:`ranges` reads every row, a range of
    ``span`` item ids at a time; :meth:`pieces`
    the first ``limit`` rows in id order, ``span`` rows at a time, each piece starting
    above the last id of the one before."""

    def __init__(self, ids: np.ndarray, out: np.ndarray, prefault: Prefault):
        self.ids, self.out, self.prefault = ids, out, prefault
        self.dim = out.shape[1]
        self.filled = 0

    def _sql(self, rows: str) -> tuple[str, str]:
        """The joined read of ``rows`` (FROM ... WHERE ... [ORDER BY ... LIMIT]: the ids, the
        blobs, how many rows are not float32 of the length, the last id) and the same rows
        one by one, which a piece with any such row is read again as (its joined blobs are
        not used)."""
        ok = (f"coalesce(i.embedding_dtype = 'float32' AND length(i.embedding) = "
              f"{self.dim * 4}, 0)")
        joined = ("SELECT group_concat(id), CAST(group_concat(e, x'') AS BLOB), sum(NOT ok), "
                  f"max(id) FROM (SELECT i.id AS id, i.embedding AS e, ({ok}) AS ok {rows})")
        return joined, f"SELECT i.id, i.embedding, i.embedding_dtype {rows}"

    def _piece(self, cur, joined: str, each: str, params: dict) -> int | None:
        """Read one piece; its last id (None when it is empty)."""
        found, blob, odd, last = cur.execute(joined, params).fetchone()
        if odd:
            self._rows(cur.execute(each, params).fetchall())
        elif found:
            self._joined(found, blob)
        return last

    def once(self, conn: Connection, from_where: str, params: dict) -> None:
        joined, each = self._sql(f"{from_where} ORDER BY i.id")
        with driver_cursor(conn, joined) as cur:
            self._piece(cur, joined, each, params)

    def ranges(self, conn: Connection, from_where: str, params: dict, span: int,
               bounds: tuple[int, int] | None = None) -> None:
        joined, each = self._sql(f"{from_where} AND i.id >= :read_lo AND i.id < :read_hi "
                                 "ORDER BY i.id")
        lo, top = bounds if bounds is not None else \
            conn.exec_driver_sql("SELECT min(id), max(id) FROM items").one()
        if lo is None:
            return
        with driver_cursor(conn, joined) as cur:
            while lo <= top:
                self._piece(cur, joined, each,
                            {**params, "read_lo": lo, "read_hi": min(lo + span, top + 1)})
                lo += span

    def pieces(self, conn: Connection, from_where: str, params: dict, limit: int,
               span: int) -> None:
        joined, each = self._sql(f"{from_where} AND i.id > :read_after ORDER BY i.id "
                                 "LIMIT :read_n")
        after = -1
        with driver_cursor(conn, joined) as cur:
            while self.filled < limit:
                want = min(span, limit - self.filled)
                before = self.filled
                after = self._piece(cur, joined, each,
                                    {**params, "read_after": after, "read_n": want})
                if after is None or self.filled - before < want:
                    return

    def _room(self, n: int) -> None:
        if self.filled + n > self.ids.shape[0]:
            raise RuntimeError("more vectors than counted: the items changed while reading")
        self.prefault.claim(self.filled + n)

    def _joined(self, found: str, blob: bytes) -> None:
        got = int_list(found)
        vectors = np.frombuffer(blob, dtype=np.float32).reshape(-1, self.dim)
        if got.size != vectors.shape[0]:
            raise RuntimeError("ids and embeddings of a range do not pair up")
        if got.size > 1 and not (got[1:] > got[:-1]).all():
            order = np.argsort(got, kind="stable")  # the database's order, not id order
            got, vectors = got[order], vectors[order]
        self._room(got.size)
        self.ids[self.filled:self.filled + got.size] = got
        self.out[self.filled:self.filled + got.size] = vectors
        self.filled += got.size

    def _rows(self, rows: list) -> None:
        if rows:
            self._room(len(rows))
            _fill(self.out, self.ids, self.filled, rows, self.dim)
            self.filled += len(rows)


class Prefault:
    """Touches the pages of a fresh array from its end, in a second thread, while the
    caller fills it from the start.

    The first write to each page of new memory is a page fault; in a new process, faulting
    in an array of a catalog's vectors takes about as long as reading the vectors. numpy
    releases the GIL while it zeroes a block, so the faults run beside the database read,
    and the whole read takes less time (BENCHMARKS.md, Design figures: prefault thread). The
    caller :meth:`claim` s the rows it is about to write; a block the helper is zeroing is
    waited for, and blocks claimed are never touched by it again. Arrays under ``MIN_BYTES``
    get no thread.
    """

    BLOCK_BYTES = 16 << 20
    MIN_BYTES = 64 << 20

    def __init__(self, out: np.ndarray, touch: bool = True):
        self.out = out
        self.rows = max(1, self.BLOCK_BYTES // max(1, out[:1].nbytes))
        blocks = -(-out.shape[0] // self.rows)
        self.front, self.back, self.busy = 0, blocks, -1
        self.cond = threading.Condition()
        self.thread = None
        if touch and out.nbytes >= self.MIN_BYTES:
            self.thread = threading.Thread(target=self._touch, name="prefault", daemon=True)

    def __enter__(self) -> Prefault:
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.thread is not None:
            self.claim(self.out.shape[0])
            self.thread.join()

    def _touch(self) -> None:
        while True:
            with self.cond:
                if self.back - 1 < self.front:
                    return
                self.back -= 1
                self.busy = block = self.back
            self.out[block * self.rows:(block + 1) * self.rows] = 0
            with self.cond:
                self.busy = -1
                self.cond.notify_all()

    def claim(self, end: int) -> None:
        """The caller writes rows below ``end`` next: keep the helper off them."""
        if self.thread is None:
            return
        with self.cond:
            self.front = max(self.front, -(-end // self.rows))
            while 0 <= self.busy < self.front:
                self.cond.wait()


class _CopyReader:
    """Streams ``COPY (SELECT id, embedding ...) TO STDOUT (FORMAT BINARY)`` into arrays.

    Rows of float32 vectors all have the same size, so numpy parses runs of them in one go;
    any other row (a float16 vector, the trailer) is parsed on its own.
    """

    FLUSH_BYTES = 8 << 20

    def __init__(self, ids: np.ndarray, out: np.ndarray, prefault: Prefault):
        self.ids, self.out, self.prefault = ids, out, prefault
        self.dim = out.shape[1]
        self.width = self.dim * 4
        self.row = np.dtype([("n", ">i2"), ("l1", ">i4"), ("id", ">i4"), ("l2", ">i4"),
                             ("v", "<f4", (self.dim,))])
        self.filled = 0
        self.done = False

    def run(self, conn: Connection, sql: str, params: dict) -> int:
        buf = bytearray()
        pos = None  # None until the header has been skipped
        stmt = f"COPY ({sql}) TO STDOUT (FORMAT BINARY)"
        with driver_cursor(conn, stmt) as cur, _copy(cur, stmt, params) as copy:
            for data in copy:
                buf += data
                if len(buf) >= self.FLUSH_BYTES:
                    pos = self._parse(buf, pos)
                    del buf[:pos]
                    pos = 0
            self._parse(buf, pos)
        if not self.done:
            raise RuntimeError("COPY ended without its trailer")
        return self.filled

    def _parse(self, buf: bytearray, pos: int | None) -> int:
        if pos is None:
            if len(buf) < 19:
                return 0
            if bytes(buf[:11]) != _PG_BINARY_HEADER[:11]:
                raise RuntimeError("not a PostgreSQL binary COPY stream")
            pos = 19 + struct.unpack_from(">i", buf, 15)[0]
        view = memoryview(buf)
        while not self.done:
            pos = self._fast(view, pos)
            step = self._one(view, pos)
            if step == 0:
                break
            pos += step
        view.release()
        return pos

    def _fast(self, view: memoryview, pos: int) -> int:
        count = (len(view) - pos) // self.row.itemsize
        if count == 0:
            return pos
        recs = np.frombuffer(view, dtype=self.row, count=count, offset=pos)
        ok = (recs["n"] == 2) & (recs["l1"] == 4) & (recs["l2"] == self.width)
        good = count if ok.all() else int(np.argmin(ok))
        self._room(good)
        self.ids[self.filled:self.filled + good] = recs["id"][:good]
        self.out[self.filled:self.filled + good] = recs["v"][:good]
        self.filled += good
        return pos + good * self.row.itemsize

    def _one(self, view: memoryview, pos: int) -> int:
        """Parse one row (or the trailer) at ``pos``; 0 when it has not fully arrived."""
        if len(view) - pos < 2:
            return 0
        if struct.unpack_from(">h", view, pos)[0] == -1:
            self.done = True
            return 2
        if len(view) - pos < 14:
            return 0
        nfields, l1, item_id, length = struct.unpack_from(">hiii", view, pos)
        if nfields != 2 or l1 != 4 or length < 0:
            raise RuntimeError("unexpected row layout in COPY stream")
        if len(view) - pos < 14 + length:
            return 0
        itemsize, rest = divmod(length, self.dim)
        dtype = {4: "<f4", 2: "<f2"}.get(itemsize)
        if rest or dtype is None:
            raise InputError(f"item {item_id} has an embedding of {length} bytes, which is "
                             f"not {self.dim} float32 or float16 numbers", source="database")
        self._room(1)
        self.ids[self.filled] = item_id
        self.out[self.filled] = np.frombuffer(view, dtype=dtype, count=self.dim, offset=pos + 14)
        self.filled += 1
        return 14 + length

    def _room(self, n: int) -> None:
        if self.filled + n > self.ids.shape[0]:
            raise RuntimeError("more vectors than counted: the items changed while reading")
        self.prefault.claim(self.filled + n)


def _fill(out: np.ndarray, ids: np.ndarray, at: int, rows: list, dim: int) -> None:
    chunk_ids, blobs, dtypes = zip(*rows, strict=True)
    ids[at:at + len(rows)] = chunk_ids
    # Copy each float32 blob straight into its row: joining the blobs first would allocate
    # (and page-fault) a temporary as large as the chunk.
    target = memoryview(out[at:at + len(rows)]).cast("B")
    width = dim * 4
    for i, (blob, dtype) in enumerate(zip(blobs, dtypes, strict=True)):
        if len(blob) == width and dtype == "float32":
            target[i * width:(i + 1) * width] = blob
            continue
        vec = np.frombuffer(blob, dtype=dtype)
        if vec.shape[0] != dim:
            raise InputError(f"item {chunk_ids[i]} has a {vec.shape[0]}-d embedding, "
                             f"expected {dim}", source="database")
        out[at + i] = vec
