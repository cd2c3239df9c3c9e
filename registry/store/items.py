"""Items: catalog entries with their embeddings. Upserts, counts and vector reads."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, bindparam, select, update

from ..errors import InputError
from .bulk import insert_rows, read_vectors
from .lookups import IN_CHUNK
from .schema import items


@dataclass(frozen=True)
class Space:
    """The embedding space the registry's items live in."""

    model: str | None
    dim: int


def _space_name(model: str | None) -> str:
    return "vectors given by the user" if model is None else f"model {model}"


def content_hash(vector_bytes: bytes) -> str:
    """sha256 of a vector's little-endian float32 bytes: the content of a vector item."""
    return hashlib.sha256(vector_bytes).hexdigest()


def space(conn: Connection) -> Space | None:
    """The (model, dim) of the live items' embeddings, or None when there are none."""
    row = conn.execute(
        select(items.c.embedding_model, items.c.embedding_dim)
        .where(items.c.removed_at.is_(None), items.c.embedding.is_not(None))
        .limit(1)
    ).first()
    return None if row is None else Space(row.embedding_model, row.embedding_dim)


def existing(conn: Connection, keys: Sequence[str]) -> dict[str, tuple]:
    """key -> (id, content_hash, meta, removed_at) for those of ``keys`` already stored."""
    found: dict[str, tuple] = {}
    cols = (items.c.key, items.c.id, items.c.content_hash, items.c.meta, items.c.removed_at)
    for start in range(0, len(keys), IN_CHUNK):
        part = list(keys[start:start + IN_CHUNK])
        for row in conn.execute(select(*cols).where(items.c.key.in_(part))):
            found[row.key] = (row.id, row.content_hash, row.meta, row.removed_at)
    return found


@dataclass
class UpsertCounts:
    added: int = 0
    changed: int = 0
    restored: int = 0
    unchanged: int = 0
    meta_updated: int = 0


def upsert_vectors(conn: Connection, keys: Sequence[str], vectors: np.ndarray,
                   metas: Sequence[dict | None], model: str | None, now: datetime,
                   *, source: str) -> UpsertCounts:
    """Insert new keys, update changed ones, leave identical ones alone.

    A key whose vector changed keeps its IDs in existing versions (IDs never change) but gets
    the new vector for later versions; a removed key that comes back is restored.
    """
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    current = space(conn)
    if current is not None and current.dim != vectors.shape[1]:
        raise InputError(f"vectors have dimension {vectors.shape[1]}, but the registry's items "
                         f"have dimension {current.dim}", source=source)
    if current is not None and current.model != model:
        raise InputError(f"the registry's items come from {_space_name(current.model)}, "
                         f"not {_space_name(model)}", source=source)
    known = existing(conn, keys)
    counts = UpsertCounts()
    new_rows, changed_rows, meta_rows = [], [], []
    dim = vectors.shape[1]
    for i, key in enumerate(keys):
        blob = vectors[i].tobytes()
        digest = content_hash(blob)
        meta = metas[i] if metas else None
        old = known.get(key)
        if old is None:
            new_rows.append({"key": key, "text": None, "meta": meta, "content_hash": digest,
                             "embedding": blob, "embedding_model": model,
                             "embedding_dim": dim, "embedding_dtype": "float32",
                             "created_at": now, "updated_at": now, "removed_at": None})
            counts.added += 1
            continue
        item_id, old_hash, old_meta, removed_at = old
        if old_hash != digest or removed_at is not None:
            changed_rows.append({"b_id": item_id, "b_hash": digest, "b_emb": blob,
                                 "b_meta": meta, "b_dim": dim, "b_now": now})
            if removed_at is not None:
                counts.restored += 1
            else:
                counts.changed += 1
        elif old_meta != meta:
            meta_rows.append({"b_id": item_id, "b_meta": meta})
            counts.meta_updated += 1
        else:
            counts.unchanged += 1
    insert_rows(conn, items, new_rows)
    if changed_rows:
        conn.execute(
            update(items).where(items.c.id == bindparam("b_id")).values(
                content_hash=bindparam("b_hash"), embedding=bindparam("b_emb"),
                meta=bindparam("b_meta"), embedding_model=model,
                embedding_dim=bindparam("b_dim"), embedding_dtype="float32",
                updated_at=bindparam("b_now"), removed_at=None),
            changed_rows)
    if meta_rows:
        conn.execute(update(items).where(items.c.id == bindparam("b_id"))
                     .values(meta=bindparam("b_meta")), meta_rows)
    return counts


# SQL over ``items i``: live items are those a new version covers
_LIVE = "i.removed_at IS NULL AND i.embedding IS NOT NULL"
_UNASSIGNED = (
    f"FROM items i WHERE {_LIVE} AND i.id > {{after}} "
    "AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.version_id = {version} "
    "AND a.item_id = i.id)"
)


def _param(conn: Connection, name: str) -> str:
    return f"%({name})s" if conn.dialect.name == "postgresql" else f":{name}"


def count_live(conn: Connection) -> int:
    """Items that are not removed and have an embedding: what a new version covers."""
    return conn.exec_driver_sql(f"SELECT count(*) FROM items i WHERE {_LIVE}").scalar_one()


def live_vectors(conn: Connection, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 vectors) of every live item, in id order."""
    return read_vectors(conn, f"FROM items i WHERE {_LIVE}", {}, count_live(conn), dim)


def unassigned_vectors(conn: Connection, version: int, dim: int, after: int,
                       limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` live items with no ID in ``version`` and an id above ``after``."""
    where = _UNASSIGNED.format(after=_param(conn, "after"), version=_param(conn, "version"))
    params = {"after": after, "version": version}
    return read_vectors(conn, where, params, limit, dim, limit=limit)
