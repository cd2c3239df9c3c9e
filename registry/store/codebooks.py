"""Codebooks: each version's centroids as checksummed ``.npy`` blobs, one row per level."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from sqlalchemy import Connection, insert, select

from ..errors import DatabaseError, NotFoundError, StateError
from .schema import State, codebooks
from .versions import get


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def write(conn: Connection, number: int, books: list[np.ndarray]) -> None:
    """Store a version's codebooks; a version's codebooks are written once, while a draft."""
    v = get(conn, number, lock=True)
    if v is None:
        raise NotFoundError("version", number)
    if v.state != State.DRAFT:
        raise StateError(f"{v.label} is {v.state}: its codebooks never change")
    if conn.execute(select(codebooks.c.level).where(codebooks.c.version_id == number)).first():
        raise StateError(f"{v.label} already has codebooks: they never change")
    rows = []
    for level, cb in enumerate(books, start=1):
        data = _npy_bytes(cb)
        rows.append({"version_id": number, "level": level, "k": int(cb.shape[0]),
                     "dim": int(cb.shape[1]), "dtype": "float32",
                     "sha256": hashlib.sha256(data).hexdigest(), "data": data})
    conn.execute(insert(codebooks), rows)


def read(conn: Connection, number: int) -> list[np.ndarray]:
    """A version's codebooks, each checked against its sha256, dtype and shape."""
    rows = conn.execute(select(codebooks).where(codebooks.c.version_id == number)
                        .order_by(codebooks.c.level)).all()
    if not rows:
        raise DatabaseError(f"version {number} has no codebooks")
    return [load(number, row.level, row.k, row.dim, row.dtype, row.sha256, row.data)
            for row in rows]


def load(number: int, level: int, k: int, dim: int, dtype: str, sha256: str,
         data: bytes) -> np.ndarray:
    """One stored codebook blob as float32, checked against its sha256, dtype and shape."""
    where = f"codebook level {level} of version {number}"
    data = bytes(data)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DatabaseError(f"{where} fails its sha256 check: the stored bytes were changed")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        raise DatabaseError(f"{where} is not a valid .npy array: {e}") from None
    if arr.dtype.name != dtype or arr.shape != (k, dim):
        raise DatabaseError(f"{where} has dtype {arr.dtype} and shape {arr.shape}, "
                            f"expected {dtype} and {(k, dim)}")
    return np.ascontiguousarray(arr, dtype=np.float32)
