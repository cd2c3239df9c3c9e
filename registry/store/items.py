"""Items: catalog entries with their text, metadata and embedding. Reads and writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Connection, Text, bindparam, cast, func, select, text, update

from ..errors import InputError
from . import assignments
from .bulk import insert_rows, int_list, pg_array, read_vectors
from .lookups import IN_CHUNK, driver_cursor, driver_rows, storable
from .schema import LIVE_TERMS, NOT_LIVE_TERMS, items


@dataclass(frozen=True)
class Space:
    """An embedding space: the model the vectors came from (None: given by the user) and
    their dimension."""

    model: str | None
    dim: int

    @property
    def description(self) -> str:
        who = "vectors given by the user" if self.model is None else f"model {self.model}"
        return f"{who} (dimension {self.dim})"


@dataclass(frozen=True)
class Stored:
    """What the store holds for one key."""

    id: int
    content_hash: str
    meta: dict | None
    removed: bool
    model: str | None
    has_embedding: bool


def existing(conn: Connection, keys: Sequence[str]) -> dict[str, Stored]:
    """key -> Stored for those of ``keys`` already in the registry (removed ones too)."""
    found: dict[str, Stored] = {}
    keys = storable(keys)
    cols = (items.c.key, items.c.id, items.c.content_hash, items.c.meta, items.c.removed_at,
            items.c.embedding_model, items.c.embedding_dim)
    for start in range(0, len(keys), IN_CHUNK):
        part = list(keys[start:start + IN_CHUNK])
        for r in conn.execute(select(*cols).where(items.c.key.in_(part))):
            found[r.key] = Stored(r.id, r.content_hash, r.meta, r.removed_at is not None,
                                  r.embedding_model, r.embedding_dim is not None)
    return found


def keys_of(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    """The keys of the items ``ids`` (a few: one IN list), by id."""
    if not len(ids):
        return {}
    q = select(items.c.id, items.c.key).where(items.c.id.in_([int(i) for i in ids]))
    return {row.id: row.key for row in conn.execute(q)}


def embeddings(conn: Connection, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """key -> float32 embedding for those of ``keys`` that have one."""
    out: dict[str, np.ndarray] = {}
    keys = storable(keys)
    q = select(items.c.key, items.c.embedding, items.c.embedding_dtype)
    for start in range(0, len(keys), IN_CHUNK):
        part = list(keys[start:start + IN_CHUNK])
        for r in conn.execute(q.where(items.c.key.in_(part), items.c.embedding.is_not(None))):
            out[r.key] = np.frombuffer(r.embedding, dtype=r.embedding_dtype).astype(np.float32)
    return out


def spaces(conn: Connection) -> list[Space]:
    """The distinct embedding spaces of the live items: one, or none when there are no items
    (two or more only while a re-embedding is unfinished)."""
    live = (select(items.c.embedding_model, items.c.embedding_dim)
            .where(items.c.removed_at.is_(None), items.c.embedding.is_not(None)).limit(1))
    # the first and the last space in index order (each database's own NULL order): two
    # seeks in ix_items_live_space, where DISTINCT would read every item
    first = conn.execute(live.order_by(items.c.embedding_model, items.c.embedding_dim)).first()
    if first is None:
        return []
    last = conn.execute(live.order_by(items.c.embedding_model.desc(),
                                      items.c.embedding_dim.desc())).first()
    found = [Space(first.embedding_model, first.embedding_dim)]
    if tuple(last) != tuple(first):
        found.append(Space(last.embedding_model, last.embedding_dim))
    return found


def single_space(conn: Connection) -> Space | None:
    """The live items' one embedding space (None without items); several is an error."""
    found = spaces(conn)
    if len(found) > 1:
        raise InputError("the items' embeddings come from more than one model (an unfinished "
                         "re-embedding): finish it with `registry add FILE ... --reembed`",
                         source="items")
    return found[0] if found else None


def lock_inserts(conn: Connection) -> None:
    """Serialise writers of new items until the end of the transaction, so that a writer can
    see what another one added before it inserts (SQLite: its write lock already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('registry.items'))"))


def insert(conn: Connection, rows: list[dict]) -> None:
    """New items: dicts with every column but ``id`` and ``removed_at``."""
    insert_rows(conn, items, rows)


def update_content(conn: Connection, rows: list[dict]) -> None:
    """New content for existing items: dicts of ``id`` and the text, content_hash, embedding,
    embedding_model, embedding_dim, embedding_dtype and updated_at columns. A removed item
    that gets new content is live again."""
    if rows:
        names = [k for k in rows[0] if k != "id"]
        conn.execute(update(items).where(items.c.id == bindparam("b_id"))
                     .values(removed_at=None, touched_at=touch_stamp(conn),
                             **{k: bindparam("b_" + k) for k in names}),
                     [{"b_" + k: v for k, v in r.items()} for r in rows])


def touch_stamp(conn: Connection):
    """What ``touched_at`` is set to: the database's clock on PostgreSQL (one clock for
    every host that writes; the transaction's start), this host's on SQLite (one host)."""
    return func.now() if conn.dialect.name == "postgresql" else datetime.now(UTC)


def clock(conn: Connection) -> datetime:
    """Now, by the clock :func:`touch_stamp` uses."""
    if conn.dialect.name == "postgresql":
        return conn.execute(select(func.statement_timestamp())).scalar()
    return datetime.now(UTC)


def update_meta(conn: Connection, metas: dict[int, dict | None]) -> None:
    """New metadata for existing items (touched)."""
    if metas:
        conn.execute(update(items).where(items.c.id == bindparam("b_id"))
                     .values(meta=bindparam("b_meta"), touched_at=touch_stamp(conn)),
                     [{"b_id": i, "b_meta": m} for i, m in metas.items()])


def set_removed(conn: Connection, ids: Sequence[int], when: datetime | None) -> None:
    """Tombstone items (``when``), or bring them back (None); touched either way. Rows are
    never deleted."""
    for start in range(0, len(ids), IN_CHUNK):
        conn.execute(update(items).where(items.c.id.in_(list(ids[start:start + IN_CHUNK])))
                     .values(removed_at=when, touched_at=touch_stamp(conn)))


def texts_to_reembed(conn: Connection, model: str | None) -> list[tuple[int, str, str | None]]:
    """(id, key, text) of live items whose embedding is not from ``model``."""
    q = (select(items.c.id, items.c.key, items.c.text)
         .where(items.c.removed_at.is_(None),
                (items.c.embedding_model.is_distinct_from(model))
                | items.c.embedding.is_(None))
         .order_by(items.c.id))
    return [tuple(r) for r in conn.execute(q)]


# SQL over ``items i``: live items are those a new version covers, and the others (its
# negation); the very terms of the partial indexes ix_items_live_space and ix_items_not_live,
# so that SQLite's planner can use them
_LIVE = " AND ".join(f"i.{term}" for term in LIVE_TERMS)
_NOT_LIVE = "(" + " OR ".join(f"i.{term}" for term in NOT_LIVE_TERMS) + ")"


# every live item, read by id ranges of the table itself
LIVE_FROM = f"FROM items i WHERE {_LIVE}"


def in_space(conn: Connection, space: Space, after: int) -> tuple[str, dict]:
    """SQL (FROM ... WHERE over ``items i``) and parameters for the live items of ``space``
    with an id above ``after``: naming the space lets the partial index ix_items_live_space
    (model, dim, id) yield their ids in order without reading an item row."""
    model = "i.embedding_model IS NULL" if space.model is None \
        else f"i.embedding_model = {_param(conn, 'model')}"
    return (f"{LIVE_FROM} AND {model} AND i.embedding_dim = {_param(conn, 'dim')} "
            f"AND i.id > {_param(conn, 'after')}",
            {"model": space.model, "dim": space.dim, "after": after})


def _unassigned(conn: Connection, space: Space, version: int, after: int, *,
                without_id: bool = True) -> tuple[str, dict]:
    """SQL (FROM ... WHERE over ``items i``) and parameters for the live items of ``space``
    with an id above ``after`` and (``without_id``) no ID in ``version``. Naming the space
    lets the partial index ix_items_live_space (model, dim, id) yield ids in order without
    reading any item row (and its embedding) that already has an ID.

    Assign goes up the ids, and above the version's highest item id with an ID no item has
    one: there the items are not looked up among the IDs at all (one probe of the IDs'
    index decides), which makes PostgreSQL's list and SQLite's batch reads faster
    (BENCHMARKS.md, Design figures: no anti-join above the IDs). On SQLite the writer lock
    keeps that exact; on PostgreSQL an ID another assigner gives there afterwards is caught
    by :func:`claim`."""
    sql, params = in_space(conn, space, after)
    if without_id and _ids_above(conn, version, after):
        sql += (" AND NOT EXISTS (SELECT 1 FROM assignments a "
                f"WHERE a.version_id = {_param(conn, 'version')} AND a.item_id = i.id)")
    return sql, {**params, "version": version}


def _ids_above(conn: Connection, version: int, after: int) -> bool:
    """Whether ``version`` holds an ID of an item with an id above ``after`` (one probe of
    the index of its item ids)."""
    top = driver_rows(conn, "SELECT max(item_id) FROM assignments WHERE version_id = ?",
                      (version,))[0][0]
    return top is not None and top > after


def _param(conn: Connection, name: str) -> str:
    return f"%({name})s" if conn.dialect.name == "postgresql" else f":{name}"


def count_live(conn: Connection) -> int:
    """Items that are not removed and have an embedding: what a new version covers."""
    return conn.exec_driver_sql(f"SELECT count(*) FROM items i WHERE {_LIVE}").scalar_one()


def count_not_live(conn: Connection) -> int:
    """Items removed or without an embedding, counted through their own small partial index
    (migration 0007): cheap however large the catalog."""
    hint = " INDEXED BY ix_items_not_live" if conn.dialect.name == "sqlite" else ""
    return conn.exec_driver_sql(f"SELECT count(*) FROM items i{hint} WHERE {_NOT_LIVE}"
                                ).scalar_one()


def touched_mark(conn: Connection) -> datetime | None:
    """When an existing item was last touched: its metadata, content or removal changed
    (one index seek)."""
    return conn.execute(select(func.max(items.c.touched_at))).scalar()


def touched_since(conn: Connection, since: datetime) -> list[tuple[str, str | None, bool]]:
    """(key, metadata as JSON text or None, removed) of the items touched at or after
    ``since``."""
    q = (select(items.c.key, cast(items.c.meta, Text), items.c.removed_at.is_not(None))
         .where(items.c.touched_at >= since))
    return [tuple(r) for r in conn.execute(q)]


def live_vectors(conn: Connection, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 vectors) of every live item, in id order."""
    return read_vectors(conn, LIVE_FROM, {}, count_live(conn), dim)


def next_unassigned(conn: Connection, space: Space, version: int, after: int,
                    limit: int, *, below: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 vectors) of up to ``limit`` live items of ``space`` with no ID in
    ``version`` and an id above ``after`` (and below ``below``), in id order (SQLite: the
    writer lock keeps other assigners out while the caller gives them IDs)."""
    where, params = _unassigned(conn, space, version, after)
    if below is not None:
        where += f" AND i.id < {_param(conn, 'below')}"
        params["below"] = below
    return read_vectors(conn, where, params, limit, space.dim, limit=limit)


def nth_unassigned(conn: Connection, space: Space, version: int, after: int,
                   n: int) -> int | None:
    """The id of the ``n``-th (1-based) live item of ``space`` with no ID in ``version`` and
    an id above ``after``, None when there are fewer: where a batch of ``n`` would end. The
    ids only, in the order of the partial index: no item row is read."""
    where, params = _unassigned(conn, space, version, after)
    return conn.exec_driver_sql(f"SELECT i.id {where} ORDER BY i.id LIMIT 1 OFFSET "
                                f"{int(n) - 1}", params).scalar()


def assigned_through(conn: Connection, version: int) -> int | None:
    """The version's highest item id with an ID (0 without any) when every live item up to
    it has an ID, so that only items above it can be without one; None when some live item
    up to it has none (it was restored, or embedded at last, after the version's IDs up to
    there were given, or its id came to PostgreSQL after higher ones).

    Counted: the live items up to that id against the IDs less those of items no longer live.
    The live items up to it are the item rows up to it less the few not live, read through
    their own small partial index (migration 0007). The rows up to it: on PostgreSQL every
    row (the count that migration 0012's triggers keep) less those above it, the new ones; on
    SQLite the ids from the first up to it, which is the count where ids are dense as
    AUTOINCREMENT gives them, and more where some are missing: then the live items counted
    are more than the IDs can be, and this says None. Neither reads the whole catalog, which
    counting the live items did: 0.66-0.85 s at 10M on SQLite, 2.2-2.5 s on PostgreSQL
    (BENCHMARKS.md, Design figures: assigned_through counts)."""
    v = _param(conn, "version")
    if conn.dialect.name == "sqlite":
        hint = " INDEXED BY ix_items_not_live"
        rows = "(SELECT coalesce(t.top - min(id) + 1, 0) FROM items)"
    else:
        hint = ""
        rows = ("(SELECT coalesce(sum(items), 0) FROM item_count) - "
                "(SELECT count(*) FROM items i WHERE i.id > t.top)")
    # the version's IDs (a frozen one's from its seal), read first and apart: inside the
    # statement, a draft's count of its IDs (costed though a seal makes it needless) made
    # PostgreSQL compile the whole statement (JIT) each time. IDs given between the two
    # reads make the counts differ, and the answer None.
    held = assignments.count(conn, version)
    sql = (f"SELECT t.top, {rows}, "
           f"(SELECT count(*) FROM items i{hint} WHERE {_NOT_LIVE} AND i.id <= t.top), "
           f"(SELECT count(*) FROM items i{hint} WHERE {_NOT_LIVE} "
           f"AND i.id <= t.top AND EXISTS (SELECT 1 FROM assignments a "
           f"WHERE a.version_id = {v} AND a.item_id = i.id)) "
           f"FROM (SELECT coalesce(max(item_id), 0) AS top FROM assignments "
           f"WHERE version_id = {v}) t")
    top, rows, not_live, gone = conn.exec_driver_sql(sql, {"version": version}).one()
    return top if rows - not_live == held - gone else None


def first_unassigned(conn: Connection, space: Space, version: int, *,
                     span: int = 1 << 20) -> int | None:
    """SQLite: the smallest id of a live item of ``space`` without an ID in ``version``
    (None when every one has one), for the first :func:`next_unassigned` to start at: the
    first live item above :func:`assigned_through` where it has an answer, else
    :func:`_gap`."""
    through = assigned_through(conn, version)
    if through is None:
        return _gap(conn, space, version, span)
    where, params = _unassigned(conn, space, version, through, without_id=False)
    return conn.exec_driver_sql(f"SELECT min(i.id) {where}", params).scalar()


def _gap(conn: Connection, space: Space, version: int, span: int) -> int | None:
    """:func:`first_unassigned` when some item up to the version's highest item id has no
    ID: the items' ids and the version's item ids are read a range of ``span`` ids at a
    time, both in index order and joined by the database into one text each, and numpy
    finds the first id of the one missing from the other: the anti-join probes the IDs once
    per item, slower than reading both lists (BENCHMARKS.md, Design figures: gap by two lists)."""
    top = conn.exec_driver_sql("SELECT max(id) FROM items").scalar()
    where, params = _unassigned(conn, space, version, 0, without_id=False)
    live = f"SELECT group_concat(i.id) {where} AND i.id < :below"
    given = ("SELECT group_concat(item_id) FROM assignments WHERE version_id = :version "
             "AND item_id > :after AND item_id < :below")
    for lo in range(0, (top or 0) + 1, span):
        bounds = {**params, "after": lo - 1, "below": lo + span}
        ids = int_list(conn.exec_driver_sql(live, bounds).scalar())
        if ids.size:
            done = int_list(conn.exec_driver_sql(given, bounds).scalar())
            missing = np.setdiff1d(ids, done, assume_unique=True)
            if missing.size:
                return int(missing.min())
    return None


def unassigned_ids(conn: Connection, space: Space, version: int, *, after: int = 0,
                   among: list[int] | None = None) -> list[int]:
    """The live items of ``space`` with no ID in ``version`` and an id above ``after``
    (and, given ``among``, one of those), in id order: one anti-join over the partial
    index, where a claim per batch would scan the catalog each time."""
    where, params = _unassigned(conn, space, version, after)
    if among is not None:
        where += " AND i.id = ANY(CAST(%(among)s AS bigint[]))"
        params["among"] = pg_array(among)
    sql = f"SELECT i.id {where} ORDER BY i.id"
    with driver_cursor(conn, sql) as cur:
        # room to hash a million IDs' items at once: in the default 4 MB the anti-join spills
        # to temporary files, which is slower (BENCHMARKS.md, Design figures: work_mem for
        # the anti-join); for this transaction only
        cur.execute("SET LOCAL work_mem = '64MB'")
        cur.execute(sql, params)
        return [r[0] for r in cur.fetchall()]


# PostgreSQL claims: a transaction-level advisory lock per block of CLAIM_BLOCK consecutive
# item ids, keyed by a tag of this registry's, the version and the block
CLAIM_BLOCK = 256
_CLAIM_TAG = 0x5249 << 48


def claim(conn: Connection, space: Space, version: int, ids: list[int]
          ) -> tuple[np.ndarray, np.ndarray]:
    """PostgreSQL: claim those of ``ids`` (sorted) that are still live and without an ID in
    ``version`` and that no other assigner holds; (their ids, float32 vectors).

    Assigners lock blocks of CLAIM_BLOCK consecutive ids, each with a transaction-level
    advisory lock taken without waiting (``pg_try_advisory_xact_lock``), so that concurrent
    assigners on one host or many take disjoint items; a killed assigner's transaction ends
    and its blocks are free again. Locking the items' rows instead (``FOR UPDATE SKIP
    LOCKED``) writes every claimed row's page, which made the claim far slower
    (BENCHMARKS.md, Design figures: advisory-lock claims)."""
    blocks = sorted({i // CLAIM_BLOCK for i in ids})
    keys = [_CLAIM_TAG | version << 32 | b for b in blocks]
    sql = ("SELECT k FROM unnest(CAST(%(keys)s AS bigint[])) AS k "
           "WHERE pg_try_advisory_xact_lock(k)")
    with driver_cursor(conn, sql) as cur:
        cur.execute(sql, {"keys": pg_array(keys)})
        held = {r[0] & 0xFFFFFFFF for r in cur.fetchall()}
    mine = [i for i in ids if i // CLAIM_BLOCK in held]
    if not mine:
        return np.empty(0, dtype=np.int64), np.empty((0, space.dim), dtype=np.float32)
    where, params = _unassigned(conn, space, version, 0, without_id=False)
    any_of = "ANY(CAST(%(ids)s AS bigint[]))"
    if mine[-1] - mine[0] + 1 == len(mine):
        # consecutive ids (as new items get them): one range of the index holds exactly
        # them, which PostgreSQL plans and reads faster than a list of 50,000 (BENCHMARKS.md,
        # Design figures: claimed ids as one range)
        mine_sql, mine_params = "BETWEEN %(lo)s AND %(hi)s", {"lo": mine[0], "hi": mine[-1]}
    else:
        mine_sql, mine_params = f"= {any_of}", {"ids": pg_array(mine)}
    found, vectors = read_vectors(conn, f"{where} AND i.id {mine_sql}",
                                  {**params, **mine_params}, len(mine), space.dim)
    # those given IDs before this round's list was made, or by an assigner that committed
    # since (it released its blocks then, and a new statement sees its IDs); asked apart:
    # inside the reading statement the planner hashed the whole IDs table for it. Where the
    # ids are dense (as above the IDs all given) one range of the index holds no more IDs
    # than there are ids, and is read faster than each id is looked up (BENCHMARKS.md,
    # Design figures: claimed ids as one range)
    if not found.size:
        return found, vectors
    if int(found[-1]) - int(found[0]) < 2 * found.size:
        among, bounds = "BETWEEN %(lo)s AND %(hi)s", {"lo": int(found[0]), "hi": int(found[-1])}
    else:
        among, bounds = f"= {any_of}", {"ids": pg_array(found.tolist())}
    sql = f"SELECT item_id FROM assignments WHERE version_id = %(v)s AND item_id {among}"
    with driver_cursor(conn, sql) as cur:
        cur.execute(sql, {"v": version, **bounds})
        done = [r[0] for r in cur.fetchall()]
    if done:
        keep = ~np.isin(found, done)
        found, vectors = found[keep], vectors[keep]
    return found, vectors


# -- listing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Listed:
    key: str
    removed: bool
    model: str | None
    dim: int | None
    dtype: str | None
    meta: dict | None
    created_at: datetime
    updated_at: datetime


def _status_filter(status: str):
    if status == "live":
        return items.c.removed_at.is_(None)
    if status == "removed":
        return items.c.removed_at.is_not(None)
    return None


def _since_filters(since: datetime | None, what: str) -> list:
    if since is None:
        return []
    if what == "changed":
        return [items.c.created_at <= since, items.c.updated_at > since]
    return [items.c.created_at > since]


def count(conn: Connection, status: str = "all", since: datetime | None = None,
          what: str = "changed") -> int:
    """Items by status (live / removed / all), optionally only those ``changed`` (existing
    at ``since`` with new content after it) or ``new`` (added after it)."""
    conds = [c for c in [_status_filter(status), *_since_filters(since, what)] if c is not None]
    return conn.execute(select(func.count()).select_from(items).where(*conds)).scalar_one()


def listing(conn: Connection, status: str, since: datetime | None, what: str,
            limit: int) -> list[Listed]:
    conds = [c for c in [_status_filter(status), *_since_filters(since, what)] if c is not None]
    q = (select(items.c.key, items.c.removed_at, items.c.embedding_model, items.c.embedding_dim,
                items.c.embedding_dtype, items.c.meta, items.c.created_at, items.c.updated_at)
         .where(*conds).order_by(items.c.id).limit(limit))
    return [Listed(r.key, r.removed_at is not None, r.embedding_model, r.embedding_dim,
                   r.embedding_dtype, r.meta, r.created_at, r.updated_at)
            for r in conn.execute(q)]


def population_from(conn: Connection, version: int, incremental: bool | None
                    ) -> tuple[str, dict]:
    """SQL (FROM ... WHERE over ``items i``) and parameters for the items with an ID in
    ``version`` (only those given at training time, or only those assigned later, when
    ``incremental`` says so; see :class:`registry.store.scan.Vectors`)."""
    where = (f"FROM items i JOIN assignments a ON a.item_id = i.id "
             f"WHERE a.version_id = {_param(conn, 'version')}")
    params: dict = {"version": version}
    if incremental is not None:
        where += f" AND a.incremental = {_param(conn, 'inc')}"
        params["inc"] = incremental
    return where, params
