"""Adding and removing catalog items: decide what changed, embed only that, write in batches.

An ``add`` first validates everything it was given, then sorts each key into new, changed,
restored, metadata-only or unchanged by its content hash (sha256 of the text, or of the
vector's float32 bytes). Only new and changed items are embedded, batch by batch, and each
batch is committed in its own transaction: after an interruption, running the same command
again finds the finished batches unchanged and embeds only the rest.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import defaults
from .embed import Embedder, VectorSpace, vector_space
from .errors import InputError, NotFoundError, listed
from .hooks import pause_point
from .ingest import Incoming
from .store import db, items, versions
from .store.db import Tx
from .store.items import Space, Stored

DTYPES = ("float32", "float16")
# as an item's metadata: keep what the item has (a new item gets none), decided in the same
# read that finds what changed
KEEP = object()
# the most items `items` lists
MAX_LISTED = 10_000
Progress = Callable[[int, int], None]


@dataclass
class AddResult:
    """What one ``add`` did, item by item."""

    source: str
    rows: int
    added: int = 0
    changed: int = 0
    restored: int = 0
    unchanged: int = 0
    meta_updated: int = 0
    reembedded: int = 0
    embedded: int = 0
    model: str | None = None
    dim: int | None = None
    seconds: float = 0.0
    texts: bool = False  # texts embedded here, not vectors given (from ``model`` or not)
    # where asked for: key -> added, changed (content or metadata), restored or unchanged
    outcomes: dict[str, str] | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.outcomes is None:
            del out["outcomes"]
        return out

    def _set(self, key: str, outcome: str) -> None:
        if self.outcomes is not None:
            self.outcomes[key] = outcome


@dataclass(frozen=True)
class _Job:
    """One item to embed and write."""

    key: str
    content_hash: str
    text: str | None  # None for vectors
    row: int | None  # index into the incoming items; None: re-embedded from the store
    item_id: int | None  # None: a new item


@dataclass
class _Plan:
    embed: list[int] = field(default_factory=list)  # indices into the incoming items
    restore: list[int] = field(default_factory=list)  # item ids, content unchanged
    metas: dict[int, dict | None] = field(default_factory=dict)  # item id -> new meta


def content_hash(text: str | None = None, vector: np.ndarray | None = None) -> str:
    """sha256 of a text (UTF-8) or of a vector's little-endian float32 bytes."""
    if text is not None:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(vector, dtype="<f4").tobytes()).hexdigest()


def _check_space(space: Space | None, model: str | None, dim: int | None,
                 source: str, is_text: bool) -> None:
    """One registry, one embedding space: the items given must match the stored ones."""
    if space is None:
        return
    if space.model != model:
        new = (f"model {model}" if model is not None else "vectors given without a model")
        if not is_text and model is None and space.model is not None:
            hint = (f"if these vectors come from {space.model}, say so with `vector_model` "
                    f"{space.model}")
        elif is_text and space.model is None:
            hint = (f"if the stored vectors come from {model}, add them again with "
                    f"`vector_model` {model} and `reembed`; to embed every item with it "
                    "instead, add their texts with `reembed`")
        elif is_text:
            hint = "to move every item to this model, add with `reembed`"
        else:
            hint = ("to move the registry to these vectors, add with `reembed` a file that "
                    "holds a vector for every item")
        raise InputError(f"the registry's items come from {space.description}, not {new}; "
                         f"one registry holds one embedding space: {hint}", source=source)
    if dim is not None and space.dim != dim:
        raise InputError(f"vectors have dimension {dim}, but the registry's items have "
                         f"dimension {space.dim}", source=source)


def _plan(incoming: Incoming, hashes: list[str], known: dict[str, Stored],
          model: str | None, result: AddResult) -> _Plan:
    plan = _Plan()
    for i, key in enumerate(incoming.keys):
        old = known.get(key)
        if old is None:
            plan.embed.append(i)
            result.added += 1
            result._set(key, "added")
            continue
        if incoming.metas[i] is not KEEP and old.meta != incoming.metas[i]:
            plan.metas[old.id] = incoming.metas[i]
        same = old.content_hash == hashes[i] and old.model == model and old.has_embedding
        if not same:
            plan.embed.append(i)
        elif old.removed:
            plan.restore.append(old.id)
        if old.removed:
            result.restored += 1
            result._set(key, "restored")
        elif not same:
            result.changed += 1
            result._set(key, "changed")
        elif old.id in plan.metas:
            result.meta_updated += 1
            result._set(key, "changed")
        else:
            result.unchanged += 1
            result._set(key, "unchanged")
    return plan


def _added_meanwhile(conn, rows: list[dict], result: AddResult) -> tuple[list[dict],
                                                                          list[dict]]:
    """Split new item rows into those still new and those another process added since this
    one looked (concurrent adds of overlapping catalogs): the latter become content updates,
    or nothing when the content is the same. The caller holds the insert lock."""
    if not rows:
        return rows, []
    now = items.existing(conn, [r["key"] for r in rows])
    if not now:
        return rows, []
    fresh, late = [], []
    for r in rows:
        old = now.get(r["key"])
        if old is None:
            fresh.append(r)
            continue
        result.added -= 1
        if (old.content_hash == r["content_hash"] and old.model == r["embedding_model"]
                and old.has_embedding and not old.removed):
            result.unchanged += 1
            result._set(r["key"], "unchanged")
        else:
            result.changed += 1
            result._set(r["key"], "changed")
            late.append({"id": old.id, **{k: v for k, v in r.items()
                                          if k not in ("key", "meta", "created_at")}})
    return fresh, late


def _batches(indices: list, size: int) -> Iterator[list]:
    for start in range(0, len(indices), size):
        yield indices[start:start + size]


@dataclass
class RemoveResult:
    """Items a remove tombstoned, and those it found removed already."""

    removed: int
    already_removed: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ItemsReport:
    """Counts of items (live, removed, and changed or new since ``since`` when asked) and the
    first ones of ``status``."""

    counts: dict[str, int]
    rows: list[items.Listed]
    status: str
    since: int | None
    what: str

    def to_dict(self) -> dict:
        return {"counts": self.counts, "status": self.status, "since_version": self.since,
                "items": [{"key": r.key, "removed": r.removed, "model": r.model, "dim": r.dim,
                           "dtype": r.dtype, "meta": r.meta,
                           "created_at": r.created_at.isoformat(),
                           "updated_at": r.updated_at.isoformat()} for r in self.rows]}


@dataclass(frozen=True)
class EmbedOptions:
    """How an add embeds and stores: ``model`` and its ``device``, ``batch_size`` and
    ``backend`` for texts (None: :class:`registry.embed.Embedder`'s defaults), the model
    vectors come from (``vector_model``), the stored ``dtype``, whether to embed every item
    again (``reembed``), and the items written per transaction (``commit_every``)."""

    model: str | None = None
    vector_model: str | None = None
    device: str | None = None
    batch_size: int | None = None
    backend: str | None = None
    dtype: str = defaults.DTYPE
    reembed: bool = False
    commit_every: int = defaults.COMMIT_EVERY


def given(keys: Sequence[str], vectors: np.ndarray | None, texts: Sequence[str] | None,
          metas: Sequence[dict | None] | None, source: str) -> Incoming:
    """Items handed over in Python (not read from a file), checked as a file's rows are."""
    from .ingest import TextSpec, unique_key
    from .vectors import check_vectors

    if (vectors is None) == (texts is None):
        raise InputError("give either `vectors` or `texts`", source=source)
    seen: dict[str, int] = {}
    keys = [unique_key(seen, k, source, row) for row, k in enumerate(keys, start=1)]
    metas = list(metas) if metas is not None else [None] * len(keys)
    if len(metas) != len(keys):
        raise InputError(f"{len(keys)} keys but {len(metas)} metadata entries", source=source)
    rows = list(range(1, len(keys) + 1))
    if texts is not None:
        spec = TextSpec("text", None, ("text",))
        texts = [spec.render({"text": t}, source, row)
                 for row, t in zip(rows, texts, strict=False)]
        if len(texts) != len(keys):
            raise InputError(f"{len(keys)} keys but {len(texts)} texts", source=source)
        return Incoming(source, keys, metas, rows, texts=texts)
    arr = check_vectors(vectors, source)
    if arr.shape[0] != len(keys):
        raise InputError(f"{len(keys)} keys but vectors of shape {arr.shape}", source=source)
    return Incoming(source, keys, metas, rows, vectors=arr)


def from_file(path: str | Path, *, key: str | None, text: str | None, vector: str | None,
              keys_file: str | Path | None) -> Incoming:
    """The rows of a JSONL / CSV / Parquet file, or of a .npy matrix and its keys file."""
    from .ingest import read_file, read_npy

    if keys_file is not None:
        for param, value in (("key", key), ("text", text), ("vector", vector)):
            if value is not None:
                raise InputError("is for JSONL, CSV and Parquet files; a .npy matrix is read "
                                 "with its `keys_file` alone", param=param)
        return read_npy(path, keys_file)
    return read_file(path, "key" if key is None else key, text=text, vector=vector)


def add_incoming(tx: Tx, incoming: Incoming, options: EmbedOptions,
                 progress: Progress | None = None, *, outcomes: bool = False) -> AddResult:
    """Check that ``options`` fit what was given (an option that would do nothing is
    refused), then :func:`add`."""
    embedder, space = _embedding(incoming.texts is not None, options)
    return add(tx, incoming, embedder=embedder, vector_space=space, dtype=options.dtype,
               reembed=options.reembed, commit_batch=options.commit_every, progress=progress,
               outcomes=outcomes)


def add_shards(tx: Tx, path: str | Path, *, key: str | None, text: str | None,
               vector: str | None, progress: Progress | None, **options) -> AddResult:
    """A directory or glob of Parquet shards (see :mod:`registry.shards`), every shard
    checked first, then added a record batch at a time with :class:`EmbedOptions`
    ``options``. Each batch is :func:`add`'s work, committed as it goes: a rerun after an
    interruption finds what was written and goes on from there."""
    from .shards import ShardSet

    o = EmbedOptions(**options)
    shards = ShardSet(path, "key" if key is None else key, text=text, vector=vector)
    if o.reembed:
        raise InputError("re-embeds every item with the rows of one file: give a file, not "
                         "a set of shards", param="reembed")
    embedder, space = _embedding(text is not None, o)
    shards.check(float16=o.dtype == "float16")
    total = AddResult(str(path), shards.rows, texts=text is not None)
    start = time.perf_counter()
    done = 0
    if progress:
        progress(0, shards.rows)
    for piece in shards.pieces():
        rows = len(piece.keys)

        def step(embedded: int, jobs: int, done: int = done, rows: int = rows) -> None:
            # one bar over every shard: rows with nothing to embed count as done
            progress(done + rows - jobs + embedded, shards.rows)

        r = add(tx, piece, embedder=embedder, vector_space=space, dtype=o.dtype,
                commit_batch=o.commit_every, progress=step if progress else None,
                refresh=False)
        done += rows
        if progress:
            progress(done, shards.rows)
        for name in ("added", "changed", "restored", "unchanged", "meta_updated",
                     "embedded"):
            setattr(total, name, getattr(total, name) + getattr(r, name))
        total.model, total.dim = r.model, r.dim
    _refresh_items(tx, total.embedded)
    total.seconds = round(time.perf_counter() - start, 3)
    return total


def _embedding(is_text: bool, o: EmbedOptions) -> tuple[Embedder | None, VectorSpace | None]:
    """The embedder of texts or the space of given vectors that the options name, refusing
    an option that would do nothing."""
    embedder = space = None
    if is_text:
        if o.vector_model is not None:
            raise InputError("is for vectors; texts are embedded with `model`",
                             param="vector_model")
        embedder = Embedder(o.model, device=o.device, batch_size=o.batch_size,
                            backend=o.backend)
    else:
        for param in ("model", "device", "batch_size", "backend"):
            if getattr(o, param) is not None:
                raise InputError("is for texts to embed; vectors are stored as given "
                                 "(`vector_model` says which model made them)", param=param)
        if o.vector_model is not None:
            space = vector_space(o.vector_model)
    if not 1 <= o.commit_every <= 1_000_000:
        raise InputError(f"commit batch must be between 1 and 1000000, got {o.commit_every}",
                         param="commit_every")
    return embedder, space


def add_items(tx: Tx, keys: Sequence[str], vectors: np.ndarray | None,
              texts: Sequence[str] | None, metas: Sequence[dict | None] | None, *,
              source: str, progress: Progress | None, **options) -> AddResult:
    """Items handed over in Python, added with :class:`EmbedOptions` ``options``."""
    return add_incoming(tx, given(keys, vectors, texts, metas, source),
                        EmbedOptions(**options), progress)


def add_file(tx: Tx, path: str | Path, *, key: str | None, text: str | None,
             vector: str | None, keys_file: str | Path | None, progress: Progress | None,
             **options) -> AddResult:
    """A file's rows (see :func:`from_file`), added with :class:`EmbedOptions` ``options``;
    or a directory or glob of Parquet shards (:func:`add_shards`)."""
    from .shards import is_shard_set

    if is_shard_set(path):
        if keys_file is not None:
            raise InputError("goes with a .npy matrix, not with Parquet shards",
                             param="keys_file")
        return add_shards(tx, path, key=key, text=text, vector=vector, progress=progress,
                          **options)
    return add_incoming(tx, from_file(path, key=key, text=text, vector=vector,
                                      keys_file=keys_file), EmbedOptions(**options), progress)


def embeddings(tx: Tx, keys: Sequence[str]) -> np.ndarray:
    """The stored embeddings of ``keys`` as float32 rows, in the order given."""
    keys = list(keys)
    with tx(write=False) as conn:
        found = items.embeddings(conn, keys)
    unknown = [k for k in keys if k not in found]
    if unknown:
        raise NotFoundError("key" if len(unknown) == 1 else "keys", listed(unknown))
    return np.stack([found[k] for k in keys]) if keys else np.empty((0, 0), np.float32)


def remove(tx: Tx, keys: Sequence[str]) -> RemoveResult:
    """Tombstone items (see :meth:`registry.api.Registry.remove`); unknown keys are an error
    and remove nothing."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise InputError("give at least one key to remove", param="keys")
    with tx(write=True) as conn:
        known = items.existing(conn, keys)
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise NotFoundError("key" if len(unknown) == 1 else "keys", listed(unknown))
        live = [known[k].id for k in keys if not known[k].removed]
        items.set_removed(conn, live, db.now())
    return RemoveResult(len(live), len(keys) - len(live))


def report(tx: Tx, *, status: str, changed_since: str | int | None,
           new_since: str | int | None, limit: int) -> ItemsReport:
    """Counts of live and removed items, and the first ``limit`` items of ``status``,
    optionally only those changed (or new) since a version was trained."""
    if status not in ("live", "removed", "all"):
        raise InputError(f"status must be live, removed or all, got {status!r}",
                         param="status")
    if not 0 <= limit <= MAX_LISTED:
        raise InputError(f"limit must be between 0 and {MAX_LISTED}, got {limit}",
                         param="limit")
    if changed_since is not None and new_since is not None:
        raise InputError("give `changed_since` or `new_since`, not both", param="new_since")
    with tx(write=False) as conn:
        ref = changed_since if changed_since is not None else new_since
        since = None if ref is None else versions.resolve(conn, ref)
        what = "changed" if changed_since is not None else "new"
        when = None if since is None else since.created_at
        counts = {"live": items.count(conn, "live"), "removed": items.count(conn, "removed")}
        if since is not None:
            counts[f"{what}_since_version_{since.number}"] = items.count(conn, status, when,
                                                                         what)
        rows = items.listing(conn, status, when, what, limit)
    return ItemsReport(counts, rows, status, None if since is None else since.number, what)


def _refresh_items(tx: Tx, written: int) -> None:
    if written:
        with tx(write=False, snapshot=False) as conn:  # SQLite: nothing to do, no lock
            db.refresh_statistics(conn, "items", written, vacuum=True)


def add(tx: Tx, incoming: Incoming, *, embedder: Embedder | None = None,
        vector_space: VectorSpace | None = None, dtype: str = defaults.DTYPE,
        reembed: bool = False, commit_batch: int = 2048,
        progress: Progress | None = None, outcomes: bool = False,
        refresh: bool = True) -> AddResult:
    """Store ``incoming``: texts embedded with ``embedder``, or vectors as given (from the
    model ``vector_space`` names, when it is given); with ``outcomes``, the result says what
    became of each key. ``refresh=False`` leaves the planner's statistics to the caller,
    which adds more."""
    start = time.perf_counter()
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}",
                         param="dtype")
    is_text = incoming.texts is not None
    if is_text and embedder is None:
        raise ValueError("texts need an embedder")
    if not is_text and dtype == "float16":
        with np.errstate(over="ignore"):
            too_big = ~np.isfinite(incoming.vectors.astype(np.float16)).all(axis=1)
        if too_big.any():
            raise InputError("vector holds numbers too large for float16 storage: use "
                             "`dtype` float32", source=incoming.source,
                             row=incoming.rows[int(np.flatnonzero(too_big)[0])])
    model = embedder.label if is_text else (vector_space.label if vector_space else None)
    dim = None if is_text else int(incoming.vectors.shape[1])
    if vector_space is not None and vector_space.dim not in (None, dim):
        raise InputError(f"vectors have dimension {dim}, but {vector_space.label} gives "
                         f"vectors of dimension {vector_space.dim}", source=incoming.source)
    if is_text:
        hashes = [content_hash(text=t) for t in incoming.texts]
    else:
        hashes = [content_hash(vector=v) for v in incoming.vectors]
    result = AddResult(incoming.source, len(incoming.keys), model=model, dim=dim,
                       texts=is_text, outcomes={} if outcomes else None)

    with tx(write=False) as conn:
        # a re-embedding may find (and finish) a mix of spaces; otherwise there is one
        space = None if reembed else items.single_space(conn)
        _check_space(space, model, dim, incoming.source, is_text)
        if result.dim is None and space is not None:
            result.dim = space.dim
        known = items.existing(conn, incoming.keys)
        others = items.texts_to_reembed(conn, model) if reembed else []
    plan = _plan(incoming, hashes, known, model, result)
    mine = set(incoming.keys)
    others = [o for o in others if o[1] not in mine]
    if others and not is_text:
        raise InputError(f"`reembed` with vectors needs one for every item, and {len(others)} "
                         f"items are not in this file (for example {others[0][1]!r}): add "
                         "their vectors to it, or remove them first", source=incoming.source)
    missing = [key for _, key, text in others if text is None]
    if missing:
        raise InputError(f"{len(missing)} items have no text to re-embed (for example "
                         f"{missing[0]!r}); remove them or add them again with text",
                         source=incoming.source)

    if plan.restore or plan.metas:
        with tx(write=True) as conn:
            items.set_removed(conn, plan.restore, None)
            items.update_meta(conn, plan.metas)

    # the file's new and changed items, then (with --reembed) every other live item
    jobs = [_Job(incoming.keys[i], hashes[i], incoming.texts[i] if is_text else None, i,
                 known[incoming.keys[i]].id if incoming.keys[i] in known else None)
            for i in plan.embed]
    jobs += [_Job(key, content_hash(text=text), text, None, item_id)
             for item_id, key, text in others]
    store_as = "<f2" if dtype == "float16" else "<f4"
    if progress and jobs:
        progress(0, len(jobs))
    for batch in _batches(jobs, commit_batch):
        if is_text:
            vectors = embedder.encode([j.text for j in batch])
        else:
            vectors = incoming.vectors[[j.row for j in batch]]
        now = db.now()
        new_rows, changed_rows = [], []
        for job, vec in zip(batch, vectors.astype(store_as), strict=True):
            content = {"text": job.text, "content_hash": job.content_hash,
                       "embedding": vec.tobytes(), "embedding_model": model,
                       "embedding_dim": int(vec.shape[0]), "embedding_dtype": dtype,
                       "updated_at": now}
            if job.item_id is None:
                meta = incoming.metas[job.row]
                new_rows.append({"key": job.key, "meta": None if meta is KEEP else meta,
                                 "created_at": now, **content})
            else:
                changed_rows.append({"id": job.item_id, **content})
        with tx(write=True) as conn:
            items.lock_inserts(conn)
            new_rows, late = _added_meanwhile(conn, new_rows, result)
            items.insert(conn, new_rows)
            items.update_content(conn, changed_rows + late)
            pause_point("add-written")
        pause_point("add-committed")
        result.embedded += len(batch)
        result.reembedded += sum(1 for j in batch if j.row is None)
        result.dim = int(vectors.shape[1])
        if progress:
            progress(result.embedded, len(jobs))
    if refresh:
        _refresh_items(tx, result.embedded)
    result.seconds = round(time.perf_counter() - start, 3)
    return result
