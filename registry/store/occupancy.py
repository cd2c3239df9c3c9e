"""The code tuples a version has issued, one bit per tuple (migration 0011), for code spaces
of up to MAX_TUPLES tuples (3 x 256 has 16.7M: 2 MB).

Assign needs to know which tuples are taken before it moves colliding items; reading every
issued code grows with the version (10M codes are 80 MB, read and sorted each run), the bits
do not. The row is a cache: it says how many IDs it covers, and a reader that finds the
version holding another count makes it again from the IDs. Train writes it with a version's
IDs, assign keeps it up to date in the transaction that adds IDs, under the version's lock;
deleting a draft deletes it (:func:`registry.store.versions.delete_draft`).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, insert, select, update

from .schema import occupancy

MAX_TUPLES = 1 << 26


def fits(tuples: int) -> bool:
    """Whether a code space of ``tuples`` tuples is kept as bits."""
    return tuples <= MAX_TUPLES


def read(conn: Connection, version: int, tuples: int, ids: int) -> np.ndarray | None:
    """The version's taken tuples as booleans (``tuples`` of them), if the row covers ``ids``
    IDs, the count the version holds now; None without a row or with a stale one."""
    row = conn.execute(select(occupancy.c.ids, occupancy.c.bits)
                       .where(occupancy.c.version_id == version)).first()
    if row is None or row.ids != ids:
        return None
    bits = np.frombuffer(row.bits, dtype=np.uint8)
    if bits.size != (tuples + 7) // 8:
        return None
    return np.unpackbits(bits, count=tuples).view(bool)  # 0 or 1 each: no copy


def write(conn: Connection, version: int, taken: np.ndarray, ids: int) -> None:
    """Keep ``taken`` (booleans, one per tuple) as the version's bits, covering ``ids`` IDs."""
    bits = np.packbits(taken).tobytes()
    done = conn.execute(update(occupancy).where(occupancy.c.version_id == version)
                        .values(ids=ids, bits=bits)).rowcount
    if not done:
        conn.execute(insert(occupancy).values(version_id=version, ids=ids, bits=bits))


def of_codes(packed: np.ndarray, tuples: int) -> np.ndarray:
    """The taken tuples of the packed codes ``packed``, as :func:`read` gives them."""
    taken = np.zeros(tuples, dtype=bool)
    taken[packed] = True
    return taken
