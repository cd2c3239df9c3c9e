"""Seals: what a version held when it was frozen, so that any later change can be detected.

A seal keeps the sha256 of the version's codebook rows and the count and digest of its IDs
at freeze time; IDs assigned afterwards add to ``grown_count`` / ``grown_digest`` in the same
transaction that inserts them. The digest of a set of IDs is the sum modulo 2**64 of a
64-bit mix of each (item, packed code, number) triple: order-free, so it can be kept up to
date batch by batch, and any changed, removed or added row shows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, insert, select, update

from .lookups import driver_rows
from .schema import codebooks, seals

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_K = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD6E8FEB86659FD93), np.uint64(0xA0761D6478BD642F))
_MOD = 1 << 64


@dataclass(frozen=True)
class Seal:
    version: int
    codebooks_sha256: str
    frozen_count: int
    frozen_digest: int
    grown_count: int
    grown_digest: int

    @property
    def count(self) -> int:
        """How many IDs the version should hold now."""
        return self.frozen_count + self.grown_count

    @property
    def digest(self) -> int:
        return _signed(self.frozen_digest + self.grown_digest)


def _signed(value: int) -> int:
    """``value`` modulo 2**64 as a signed 64-bit integer (what a BIGINT column holds)."""
    value %= _MOD
    return value - _MOD if value >= 1 << 63 else value


def digest(item_ids, packed, disamb) -> int:
    """Order-free digest of a set of (item, packed code, number) rows."""
    a = np.asarray(item_ids, dtype=np.int64).view(np.uint64)
    b = np.asarray(packed, dtype=np.int64).view(np.uint64)
    c = np.asarray(disamb, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        z = a * _K[0] + b * _K[1] + c * _K[2]
        # splitmix64's finaliser: every input bit reaches every output bit
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return _signed(int(z.sum(dtype=np.uint64)))


def codebooks_sha256(conn: Connection, version: int) -> str:
    """sha256 over the version's codebook rows: level, k, dim, dtype and each blob's sha256
    (checked against the blob itself elsewhere)."""
    h = hashlib.sha256()
    for row in conn.execute(select(codebooks.c.level, codebooks.c.k, codebooks.c.dim,
                                   codebooks.c.dtype, codebooks.c.sha256)
                            .where(codebooks.c.version_id == version)
                            .order_by(codebooks.c.level)):
        h.update(f"{row.level}:{row.k}:{row.dim}:{row.dtype}:{row.sha256}\n".encode())
    return h.hexdigest()


def id_rows(conn: Connection, version: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item ids, packed codes, numbers) of every ID of ``version``."""
    rows = np.array(driver_rows(conn, "SELECT item_id, code, disamb FROM assignments WHERE "
                                      "version_id = ?", (version,)),
                    dtype=np.int64).reshape(-1, 3)
    return rows[:, 0], rows[:, 1], rows[:, 2]


def seal(conn: Connection, version: int, now) -> Seal:
    """Record what ``version`` holds now; its caller is freezing it."""
    ids = id_rows(conn, version)
    values = {"version_id": version, "codebooks_sha256": codebooks_sha256(conn, version),
              "frozen_count": int(ids[0].size), "frozen_digest": digest(*ids),
              "grown_count": 0, "grown_digest": 0, "sealed_at": now}
    conn.execute(insert(seals).values(**values))
    return get(conn, version)


def grow(conn: Connection, version: int, item_ids, packed, disamb) -> None:
    """Count IDs just assigned into a sealed version (the caller holds its lock)."""
    current = get(conn, version)
    if current is None:
        return
    conn.execute(update(seals).where(seals.c.version_id == version).values(
        grown_count=current.grown_count + len(item_ids),
        grown_digest=_signed(current.grown_digest + digest(item_ids, packed, disamb))))


def get(conn: Connection, version: int) -> Seal | None:
    row = conn.execute(select(seals).where(seals.c.version_id == version)).first()
    return None if row is None else _seal(row)


def every(conn: Connection) -> dict[int, Seal]:
    return {row.version_id: _seal(row) for row in conn.execute(select(seals))}


def _seal(row) -> Seal:
    return Seal(row.version_id, row.codebooks_sha256, row.frozen_count, row.frozen_digest,
                row.grown_count, row.grown_digest)
