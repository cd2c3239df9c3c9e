"""The Registry facade: one method per user action, each in its own transaction(s).

This module stays light to import: numpy, faiss and the write-side store modules are imported
inside the methods that need them, so that ``get``, ``lookup`` and ``versions`` start fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from .errors import InputError, NotFoundError, StateError
from .hooks import pause_point
from .ids import parse_id
from .store import db, lookups, versions
from .store.versions import ACTIVE, Version

if TYPE_CHECKING:
    import numpy as np

    from . import catalog, verifying
    from .assigning import AssignResult

MAX_LOOKUP_LIMIT = 10_000
DEFAULT_LOOKUP_LIMIT = 20
# items per assign transaction: larger batches write the code index in fewer, denser
# commits (measured at 1M on SQLite: 9.4k items/s at 50k, 6.7k at 10k)
DEFAULT_BATCH = 50_000


@dataclass
class InitResult:
    url: str
    before: str | None
    after: str | None

    def to_dict(self) -> dict:
        return {"database": self.url, "schema_before": self.before, "schema": self.after}


@dataclass
class RemoveResult:
    removed: int
    already_removed: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ItemsReport:
    counts: dict[str, int]
    rows: list
    status: str
    since: int | None
    what: str

    def to_dict(self) -> dict:
        return {"counts": self.counts, "status": self.status, "since_version": self.since,
                "items": [{"key": r.key, "removed": r.removed, "model": r.model, "dim": r.dim,
                           "dtype": r.dtype, "meta": r.meta,
                           "created_at": r.created_at.isoformat(),
                           "updated_at": r.updated_at.isoformat()} for r in self.rows]}


@dataclass
class StateChange:
    version: Version
    action: str
    changed: bool
    previous: int | None = None
    alias: str | None = None

    def to_dict(self) -> dict:
        return {"action": self.action, "changed": self.changed, "previous": self.previous,
                "alias": self.alias, "version": self.version.to_dict()}


@dataclass
class RollbackResult:
    """The alias moved back to ``version`` from ``previous``, with the IDs given in it first;
    ``full``: items left without one (see :class:`registry.assigning.AssignResult`)."""

    version: Version
    previous: int
    alias: str
    assigned: int
    full: int = 0

    def to_dict(self) -> dict:
        return {"alias": self.alias, "version": self.version.to_dict(),
                "previous": self.previous, "assigned": self.assigned, "full": self.full}

    def problem(self) -> str | None:
        """One line on the items left without an ID, or None."""
        from .assigning import left_out

        return left_out(self.version, self.full)


@dataclass
class ExportResult:
    version: int
    path: str
    rows: int
    style: str
    vocab: str | None
    tokens: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class IdRecord:
    key: str
    id: str
    codes: list[int]
    disambiguation: int
    version: int
    removed: bool = False
    metadata: dict | None = None  # only where asked for (``metadata=True``)

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        if self.metadata is None:
            del out["metadata"]
        return out


@dataclass
class GetResult(Sequence):
    """The IDs of the keys asked for that have one in ``version``, in the order asked (it is
    a sequence of them); ``unknown`` keys the registry does not hold, ``unassigned`` keys
    of live items that have no ID in the version yet (``registry assign`` gives them one),
    ``removed`` keys of items removed before they had one there (they never will; adding
    them again brings them back)."""

    version: int
    records: list[IdRecord]
    unknown: list[str]
    unassigned: list[str]
    removed: list[str] = field(default_factory=list)

    def __getitem__(self, i):
        return self.records[i]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def complete(self) -> bool:
        """Every key asked for has an ID."""
        return not self.unknown and not self.unassigned and not self.removed

    def problem(self) -> str | None:
        """One line on the keys without an ID, or None."""
        parts = []
        if self.unknown:
            parts.append(f"unknown key{'s' if len(self.unknown) > 1 else ''}: "
                         f"{_shown(self.unknown)}")
        if self.unassigned:
            parts.append(f"no ID in version {self.version} yet for {_shown(self.unassigned)} "
                         f"(run `registry assign --version {self.version}`)")
        if self.removed:
            parts.append(f"removed item{'s' if len(self.removed) > 1 else ''} without an ID "
                         f"in version {self.version}: {_shown(self.removed)} (add "
                         f"{'them' if len(self.removed) > 1 else 'it'} again to bring "
                         f"{'them' if len(self.removed) > 1 else 'it'} back)")
        return "; ".join(parts) or None

    def to_dict(self) -> dict:
        return {"version": self.version, "items": [r.to_dict() for r in self.records],
                "unknown": self.unknown, "unassigned": self.unassigned,
                "removed": self.removed}


@dataclass
class LookupResult:
    query: str
    version: int
    kind: str  # "id" or "prefix"
    records: list[IdRecord]
    more: bool
    total: int | None = None  # items under a prefix in all, where counted

    def to_dict(self) -> dict:
        return {"query": self.query, "version": self.version, "kind": self.kind,
                "items": [r.to_dict() for r in self.records], "more": self.more,
                "total": self.total}


@dataclass
class VersionSummary:
    version: Version
    items: int

    def to_dict(self) -> dict:
        return {**self.version.to_dict(), "items": self.items}


class Registry:
    """A semantic-ID registry in one database (SQLite file or PostgreSQL).

    >>> reg = Registry("sqlite:///ids.db"); reg.init()
    >>> reg.add(keys, vectors); v = reg.train(levels=3, codebook_size=256).version
    >>> reg.freeze(v.number); reg.activate(v.number); reg.get(["some-key"])
    """

    def __init__(self, url: str | None = None, *, lookups_only: bool = False):
        """A registry at ``url`` (default: ``$REGISTRY_DB``, else ``sqlite:///registry.db``).

        ``lookups_only`` is for short-lived processes that only read IDs and versions
        (``get``, ``lookup``, ``versions``): on PostgreSQL they connect through the lighter
        psycopg2 where installed, and every write is refused.
        """
        self._db = db.Database(url, lookups_only=lookups_only)
        self.url = self._db.url
        self._tx = self._db.tx
        # versions seen by get/lookup, by number: only their immutable fields (number,
        # params, codes space) are used from here, so a state change elsewhere is harmless
        self._seen: dict[int, Version] = {}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema ----------------------------------------------------------------------------

    def init(self) -> InitResult:
        """Create the schema in a new database, or upgrade an older one."""
        before, after = self._db.migrate()
        return InitResult(db.describe_url(self.url), before, after)

    # -- items -------------------------------------------------------------------------------

    def add(self, keys: Sequence[str], vectors: np.ndarray | None = None, *,
            texts: Sequence[str] | None = None, metas: Sequence[dict | None] | None = None,
            model: str | None = None, vector_model: str | None = None,
            device: str | None = None, batch_size: int | None = None,
            backend: str | None = None, dtype: str = "float32", reembed: bool = False,
            source: str = "items", commit_every: int = 2048,
            progress: catalog.Progress | None = None) -> catalog.AddResult:
        """Register items given as vectors, or as texts to embed with ``model`` (default
        all-MiniLM-L6-v2) on ``backend`` (torch, onnx or onnx-int8; see
        :class:`registry.embed.Embedder`). Vectors precomputed with a model can join the
        items that model embedded here: ``vector_model`` names it (see
        :func:`registry.embed.vector_space`). Unchanged items are left alone and never
        embedded twice."""
        from .ingest import Incoming, check_vectors, unique_key

        if (vectors is None) == (texts is None):
            raise InputError("give either vectors or texts", source=source)
        seen: dict[str, int] = {}
        keys = [unique_key(seen, k, source, row) for row, k in enumerate(keys, start=1)]
        metas = list(metas) if metas is not None else [None] * len(keys)
        if len(metas) != len(keys):
            raise InputError(f"{len(keys)} keys but {len(metas)} metadata entries",
                             source=source)
        rows = list(range(1, len(keys) + 1))
        if texts is not None:
            from .ingest import TextSpec

            spec = TextSpec("text", None, ("text",))
            texts = [spec.render({"text": t}, source, row) for row, t in zip(rows, texts,
                                                                             strict=False)]
            if len(texts) != len(keys):
                raise InputError(f"{len(keys)} keys but {len(texts)} texts", source=source)
            incoming = Incoming(source, keys, metas, rows, texts=texts)
        else:
            arr = check_vectors(vectors, source)
            if arr.shape[0] != len(keys):
                raise InputError(f"{len(keys)} keys but vectors of shape {arr.shape}",
                                 source=source)
            incoming = Incoming(source, keys, metas, rows, vectors=arr)
        return self._add(incoming, model=model, vector_model=vector_model, device=device,
                         batch_size=batch_size, backend=backend, dtype=dtype, reembed=reembed,
                         commit_every=commit_every, progress=progress)

    def add_file(self, path: str | Path, *, key: str | None = None, text: str | None = None,
                 vector: str | None = None, keys_file: str | Path | None = None,
                 model: str | None = None, vector_model: str | None = None,
                 device: str | None = None, batch_size: int | None = None,
                 backend: str | None = None, dtype: str = "float32", reembed: bool = False,
                 commit_every: int = 2048,
                 progress: catalog.Progress | None = None) -> catalog.AddResult:
        """Register the rows of a JSONL / CSV / Parquet file with a key column (``key``,
        default ``key``) and a text column or template (``text``) or a vector column
        (``vector``), or of a .npy matrix with a keys file. The whole file is checked before
        anything is written; embedding and writing then go batch by batch."""
        from .ingest import read_file, read_npy

        if keys_file is not None:
            for option, given in (("--key", key), ("--text", text), ("--vector", vector)):
                if given is not None:
                    raise InputError(f"{option} is for JSONL, CSV and Parquet files; a .npy "
                                     "matrix is read with its --keys file alone",
                                     source=option)
            incoming = read_npy(path, keys_file)
        else:
            incoming = read_file(path, "key" if key is None else key, text=text, vector=vector)
        return self._add(incoming, model=model, vector_model=vector_model, device=device,
                         batch_size=batch_size, backend=backend, dtype=dtype, reembed=reembed,
                         commit_every=commit_every, progress=progress)

    def _add(self, incoming, *, model, vector_model, device, batch_size, backend, dtype,
             reembed, commit_every, progress) -> catalog.AddResult:
        from . import catalog

        embedder = space = None
        if incoming.texts is not None:
            from .embed import Embedder

            if vector_model is not None:
                raise InputError("--vector-model is for vectors; texts are embedded with "
                                 "--model", source="--vector-model")
            embedder = Embedder(model, device=device, batch_size=batch_size, backend=backend)
        else:
            for option, given in (("--model", model), ("--device", device),
                                  ("--batch-size", batch_size), ("--backend", backend)):
                if given is not None:
                    raise InputError(f"{option} is for texts to embed; vectors are stored as "
                                     "given (--vector-model says which model made them)",
                                     source=option)
            if vector_model is not None:
                from .embed import vector_space

                space = vector_space(vector_model)
        if not 1 <= commit_every <= 1_000_000:
            raise InputError(f"commit batch must be between 1 and 1000000, got {commit_every}",
                             source="--commit-every")
        return catalog.add(self._tx, incoming, embedder=embedder, vector_space=space,
                           dtype=dtype, reembed=reembed, commit_batch=commit_every,
                           progress=progress)

    def embeddings(self, keys: Sequence[str]) -> np.ndarray:
        """The stored embeddings of ``keys`` as float32 rows, in the order given."""
        from .store import items

        keys = list(keys)
        with self._tx(write=False) as conn:
            found = items.embeddings(conn, keys)
        unknown = [k for k in keys if k not in found]
        if unknown:
            raise NotFoundError("key" if len(unknown) == 1 else "keys", _shown(unknown))
        import numpy as np

        return np.stack([found[k] for k in keys]) if keys else np.empty((0, 0), np.float32)

    def remove(self, keys: Sequence[str]) -> RemoveResult:
        """Tombstone items: they keep their IDs in existing versions (never handed to another
        item) but get none in new versions. Unknown keys are an error and remove nothing."""
        from .store import items

        keys = list(dict.fromkeys(keys))
        if not keys:
            raise InputError("give at least one key to remove", source="remove")
        with self._tx(write=True) as conn:
            known = items.existing(conn, keys)
            unknown = [k for k in keys if k not in known]
            if unknown:
                raise NotFoundError("key" if len(unknown) == 1 else "keys", _shown(unknown))
            live = [known[k].id for k in keys if not known[k].removed]
            items.set_removed(conn, live, db.now())
        return RemoveResult(len(live), len(keys) - len(live))

    def items(self, *, status: str = "live", changed_since: str | int | None = None,
              new_since: str | int | None = None, limit: int = 20) -> ItemsReport:
        """Counts of live and removed items, and the first ``limit`` items of ``status``
        (live / removed / all), optionally only those changed (or new) since a version was
        trained."""
        from .store import items

        if status not in ("live", "removed", "all"):
            raise InputError(f"status must be live, removed or all, got {status!r}",
                             source="--status")
        if not 0 <= limit <= MAX_LOOKUP_LIMIT:
            raise InputError(f"limit must be between 0 and {MAX_LOOKUP_LIMIT}, got {limit}",
                             source="--limit")
        if changed_since is not None and new_since is not None:
            raise InputError("give --changed-since or --new-since, not both", source="items")
        with self._tx(write=False) as conn:
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

    # -- versions ------------------------------------------------------------------------------

    def train(self, *, levels: int | None = None,
              codebook_size: int | Sequence[int] | None = None, name: str | None = None,
              seed: int = 0, residual: str | None = None, niter: int | None = None,
              refine: int | None = None, max_points_per_centroid: int = 256,
              from_version: str | int | None = None,
              stickiness: float | None = None, reason: str | None = None,
              collisions: str | None = None, balance: float | None = None,
              beam: int | None = None, max_disambiguation: int | None = None,
              allocation_block: int | None = None):
        """Train a new draft version on every live item and give each item an ID in it.

        With ``from_version`` the new version starts from that version's codebooks and its
        items keep their codes (and full IDs) wherever the data allows (see
        :mod:`registry.stable`); its sizes and residual mode are the parent's by default.
        ``collisions`` is ``nearest-free`` (default) or ``suffix``; ``balance`` caps every
        code at ``1 + balance`` times its even share of the items. ``niter`` k-means rounds
        per level, ``refine`` joint passes over levels 2..L and the ``beam`` width that
        encodes levels 2..L default to ``engine.DEFAULT_NITER``, ``engine.DEFAULT_REFINE``
        and ``engine.DEFAULT_BEAM`` (the last two: plain residuals, no balance; with
        ``from_version`` no refinement, and the parent's beam). ``max_disambiguation`` is
        the largest disambiguation number the version may ever issue, which fixes its token
        vocabulary (default: :func:`registry.ids.default_max_disambiguation`); an assign that
        would need more is refused. ``allocation_block``: new items get IDs this many
        consecutive item ids at a time (default 8192; see :func:`registry.assigning.block_end`).
        """
        from . import training

        return training.train(
            self._tx, levels=levels, codebook_size=codebook_size, name=name, seed=seed,
            residual=residual, niter=niter, refine=refine,
            max_points_per_centroid=max_points_per_centroid,
            from_version=from_version, stickiness=stickiness, reason=reason,
            collisions=collisions, balance=balance, beam=beam,
            max_disambiguation=max_disambiguation, allocation_block=allocation_block)

    def freeze(self, version: str | int, *, reason: str | None = None) -> StateChange:
        """Publish a draft: from now on its codebooks and issued IDs never change."""
        with self._tx(write=True) as conn:
            v = versions.resolve(conn, version, lock=True)
            if v.state == "frozen":
                return StateChange(v, "freeze", changed=False)
            if v.state != "draft":
                raise StateError(f"{v.label} is {v.state}; only a draft can be frozen")
            now = db.now()
            versions.set_state(conn, v.number, "frozen", now)
            versions.log_event(conn, "freeze", now, version=v.number, reason=reason)
            return StateChange(versions.get(conn, v.number), "freeze", changed=True)

    def activate(self, version: str | int, *, alias: str = ACTIVE,
                 reason: str | None = None) -> StateChange:
        """Point ``alias`` (default ``active``) at a frozen version."""
        versions.check_name(alias, "alias", source="--alias")
        with self._tx(write=True) as conn:
            v = versions.resolve(conn, version, lock=True)
            if v.state == "draft":
                raise StateError(f"{v.label} is draft; only a frozen version can be "
                                 f"activated (run `registry freeze {v.number}` first)")
            if v.state != "frozen":
                raise StateError(f"{v.label} is {v.state} and cannot be activated again; "
                                 "activate a frozen version (see `registry versions`) or "
                                 "train a new one")
            if versions.by_name(conn, alias) is not None:
                raise InputError(f"{alias!r} is a version name; pick another alias",
                                 source="--alias")
            now = db.now()
            previous = versions.set_alias(conn, alias, v.number, now)
            if previous != v.number:
                versions.log_event(conn, "activate", now, version=v.number, other=previous,
                                   params={"alias": alias}, reason=reason)
            return StateChange(versions.get(conn, v.number), "activate",
                               changed=previous != v.number, previous=previous, alias=alias)

    def retire(self, version: str | int, *, reason: str | None = None) -> StateChange:
        """Take a version out of use: it stays readable, but gets no new IDs and cannot be
        activated again. A version that an alias points at cannot be retired."""
        with self._tx(write=True) as conn:
            v = versions.resolve(conn, version, lock=True)
            if v.state == "retired":
                return StateChange(v, "retire", changed=False)
            if v.aliases:
                raise StateError(f"{v.label} is {', '.join(v.aliases)}: point "
                                 f"{'it' if len(v.aliases) == 1 else 'them'} at another "
                                 "version first")
            now = db.now()
            versions.set_state(conn, v.number, "retired", now)
            versions.log_event(conn, "retire", now, version=v.number, reason=reason)
            return StateChange(versions.get(conn, v.number), "retire", changed=True)

    def delete(self, version: str | int, *, reason: str | None = None) -> StateChange:
        """Delete a draft that was a mistake: its codebooks and IDs, never published, go;
        its number is never given again, and the history keeps its train and this delete.
        Frozen and retired versions are never deleted."""
        with self._tx(write=True) as conn:
            v = versions.resolve(conn, version, lock=True)
            if v.state != "draft":
                raise StateError(f"{v.label} is {v.state}: its IDs were published, and a "
                                 "frozen or retired version is never deleted (retire it "
                                 "instead)" if v.state == "frozen" else
                                 f"{v.label} is retired: its IDs were published, and it is "
                                 "never deleted")
            children = [versions.get(conn, n) for n in versions.children(conn, v.number)]
            published = [c for c in children if c.state != "draft"]
            if published:
                raise StateError(f"{published[0].label} was trained from {v.label} and is "
                                 f"{published[0].state}: a published version keeps its "
                                 "parent (retire this draft instead)")
            if children:
                raise StateError(f"{children[0].label} was trained from {v.label}: delete "
                                 "that draft first")
            from .store import assignments

            assignments.drop(conn, v.number)
            versions.delete_draft(conn, v.number)
            versions.log_event(conn, "delete", db.now(), version=v.number,
                               params={"name": v.name} if v.name else None, reason=reason)
        return StateChange(v, "delete", changed=True)

    def rollback(self, to: str | int | None = None, *, alias: str = ACTIVE,
                 reason: str | None = None) -> RollbackResult:
        """Point ``alias`` back at the version it pointed at before (or at ``to``). The items
        registered since that version was trained get their IDs in it first, batch by batch,
        and the alias moves last, so that its readers never see the version with live items
        missing; items that arrive meanwhile get theirs right after. Nothing is deleted;
        rolling forward again is another ``activate``."""
        with self._tx(write=False) as conn:
            current, target = self._rollback_target(conn, alias, to)
        first = self.assign(target.number)
        pause_point("rollback-assigned")
        with self._tx(write=True) as conn:
            now_at, target = self._rollback_target(conn, alias, to, lock=True)
            if now_at.number != current.number:
                raise StateError(f"{alias} moved to {now_at.label} while rolling back; "
                                 "nothing was changed but the new IDs: run the rollback again")
            now = db.now()
            versions.set_alias(conn, alias, target.number, now)
            versions.log_event(conn, "rollback", now, version=target.number,
                               other=current.number, params={"alias": alias}, reason=reason)
        # items added while the first assign ran (usually none)
        then = self.assign(target.number)
        return RollbackResult(self.version(target.number), current.number, alias,
                              first.assigned + then.assigned, then.full)

    @staticmethod
    def _rollback_target(conn: Connection, alias: str, to: str | int | None, *,
                         lock: bool = False) -> tuple[Version, Version]:
        """(the version ``alias`` points at, the one a rollback moves it to), checked."""
        number = versions.alias_target(conn, alias)
        if number is None:
            raise NotFoundError("alias", alias, "nothing to roll back")
        current = versions.get(conn, number)
        if to is None:
            previous = versions.activated_from(conn, alias, number)
            if previous is None:
                raise StateError(f"{alias} has pointed at {current.label} since it was "
                                 "first set: there is nothing to roll back to (use --to)")
            target = versions.get(conn, previous, lock=lock)
        else:
            target = versions.resolve(conn, to, lock=lock)
        if target.number == current.number:
            raise StateError(f"{alias} already points at {target.label}")
        if target.state != "frozen":
            raise StateError(f"{target.label} is {target.state}; only a frozen version can "
                             "be rolled back to")
        return current, target

    def history(self, version: str | int | None = None, *,
                limit: int = 50) -> list[versions.Event]:
        """The event log, newest first: train, freeze, activate, assign, retire, rollback,
        delete; ``version`` (a number, name or alias, or the number of a deleted draft) keeps
        that version's."""
        if not 1 <= limit <= MAX_LOOKUP_LIMIT:
            raise InputError(f"limit must be between 1 and {MAX_LOOKUP_LIMIT}, got {limit}",
                             source="--limit")
        with self._tx(write=False) as conn:
            number = None
            if version is not None:
                number = versions.deleted_number(conn, version)
                if number is None:
                    number = versions.resolve(conn, version).number
            return versions.history(conn, number, limit)

    def assign(self, version: str | int | None = None, *, batch_size: int = DEFAULT_BATCH,
               workers: int = 1) -> AssignResult:
        """Give every live item without an ID in the version one, against its codebooks.

        Works batch by batch, one transaction each: an interrupted run keeps the finished
        batches and a rerun picks up the rest. Existing IDs are never touched. ``workers``
        processes share the work (in parallel on PostgreSQL, one batch at a time on SQLite);
        so do assigners started on other hosts against the same PostgreSQL database.
        """
        from . import assigning

        assigning.check(batch_size, workers)
        if workers > 1:
            return assigning.assign_parallel(self._tx, self.url, version, batch_size, workers)
        return assigning.assign(self._tx, version, batch_size)

    # -- reads -------------------------------------------------------------------------------

    def _seen_version(self, conn: Connection, ref: str | int | None) -> Version:
        """The version ``ref`` names, for reads of its IDs (aliases are looked up every time;
        the version itself is fetched once)."""
        number = versions.resolve_number(conn, ref)
        v = None if number is None else self._seen.get(number)
        if v is None:
            v = None if number is None else versions.get(conn, number)
            if v is None:
                raise versions.not_found(conn, ref)
            self._seen[number] = v
        return v

    @staticmethod
    def _records(v: Version, rows: Sequence[lookups.Row],
                 metas: dict[str, dict | None] | None = None) -> list[IdRecord]:
        parts = v.space.id_parts((r.code, r.disamb) for r in rows)
        return [IdRecord(r.key, text, codes, r.disamb, v.number, r.removed,
                         None if metas is None else (metas.get(r.key) or {}))
                for r, (text, codes) in zip(rows, parts, strict=True)]

    def get(self, keys: Sequence[str], version: str | int | None = None, *,
            metadata: bool = False) -> GetResult:
        """The ID of each key in the version (default: the active one), in the order given;
        the keys without one are listed apart (see :class:`GetResult`). ``metadata`` adds
        each item's metadata to its record."""
        keys = list(keys)
        if not keys:
            raise InputError("give at least one key", source="get")
        with self._tx(write=False, snapshot=False) as conn:
            v = self._seen_version(conn, version)
            found = lookups.ids_of_keys(conn, v.number, keys)
            rows = [found[k] for k in keys if k in found and found[k].code is not None]
            metas = lookups.metadata_of(conn, [r.key for r in rows]) if metadata else None
        without = [found[k] for k in keys if k in found and found[k].code is None]
        return GetResult(v.number, self._records(v, rows, metas),
                         unknown=[k for k in keys if k not in found],
                         unassigned=[r.key for r in without if not r.removed],
                         removed=[r.key for r in without if r.removed])

    def lookup(self, query: str, version: str | int | None = None, *,
               limit: int | None = None, metadata: bool = False,
               count: bool = False) -> LookupResult:
        """A full ID gives its item; a prefix (``12`` or ``12-4``) the first ``limit``
        (default 20) items under it and, with ``count``, how many there are in all (one
        more index range read, where there are more than ``limit``). ``metadata`` adds
        each item's metadata to its record."""
        if limit is not None and not 1 <= limit <= MAX_LOOKUP_LIMIT:
            raise InputError(f"limit must be between 1 and {MAX_LOOKUP_LIMIT}, got {limit}",
                             source="--limit")
        with self._tx(write=False, snapshot=False) as conn:
            v = self._seen_version(conn, version)
            parsed = parse_id(query, v.space)
            if parsed.is_full and limit is not None:
                raise InputError(f"{query.strip()!r} is a full ID, which names one item: a "
                                 "limit applies to a prefix", source="--limit")
            limit = DEFAULT_LOOKUP_LIMIT if limit is None else limit
            if parsed.is_full:
                row = lookups.by_id(conn, v.number, v.space.pack_one(parsed.codes),
                                    parsed.disambiguation)
                if row is None:
                    raise NotFoundError("ID", query.strip(), f"in {v.label}")
                rows, kind = [row], "id"
            else:
                lo, hi = v.space.prefix_range(parsed.codes)
                rows, kind = lookups.by_range(conn, v.number, lo, hi, limit + 1), "prefix"
            more = len(rows) > limit
            rows = rows[:limit]
            total = None
            if kind == "prefix" and count:
                total = lookups.count_range(conn, v.number, lo, hi) if more else len(rows)
            metas = lookups.metadata_of(conn, [r.key for r in rows]) if metadata else None
        return LookupResult(query.strip(), v.number, kind, self._records(v, rows, metas),
                            more=more, total=total)

    def export(self, version: str | int | None, path: str | Path, *, style: str = "ids",
               vocab: str | Path | None = None) -> ExportResult:
        """Write every item's key, ID and codes in ``version`` to ``path`` (Parquet, CSV or
        JSONL by suffix); ``style="tokens"`` gives the ID as language-model tokens
        (``<a_12><b_4><c_9><d_0>``) and ``vocab`` a file of every token the version can emit."""
        import numpy as np

        from .export import output_format, write_table
        from .ids import format_ids, format_tokens, vocabulary

        if style not in ("ids", "tokens"):
            raise InputError(f"style must be ids or tokens, got {style!r}", source="--style")
        output_format(path)
        with self._tx(write=False) as conn:
            v = versions.resolve(conn, version)
            pop = lookups.population(conn, v.number, by_id=True)
        codes = v.space.unpack(pop.codes)
        numbers = np.asarray(pop.disambs, dtype=np.int64)
        columns: dict = {"key": pop.keys}
        if style == "tokens":
            columns["tokens"] = format_tokens(codes, numbers)
        else:
            columns["id"] = format_ids(codes, numbers)
        for level in range(v.space.levels):
            columns[f"level_{level + 1}"] = codes[:, level]
        columns["disambiguation"] = numbers
        columns["removed"] = pop.removed
        rows = write_table(path, columns)
        tokens = 0
        if vocab is not None:
            words = vocabulary(v.space.sizes, v.max_disambiguation)
            try:
                Path(vocab).write_text("\n".join(words) + "\n", encoding="utf-8")
            except OSError as e:
                raise InputError(f"cannot write: {e.strerror}", source=str(vocab)) from None
            tokens = len(words)
        return ExportResult(v.number, str(path), rows, style,
                            None if vocab is None else str(vocab), tokens)

    def diff(self, v1: str | int, v2: str | int, *, remap: str | Path | None = None):
        """Churn at each depth for the items in both versions, items only in one, centroid
        movement; labels aligned first when neither version was trained from the other.
        ``remap`` writes key, old ID, new ID for every item."""
        from . import analysis

        return analysis.diff(self._tx, v1, v2, remap=remap)

    def drift(self, version: str | int | None = None, against: str | int | None = None):
        """How far the items assigned into a version after training have moved from those it
        was trained on (or, with ``against``, a newer version's training items from this
        one's), with a verdict: ok, watch or retrain."""
        from . import analysis

        return analysis.drift(self._tx, version, against)

    def stats(self, version: str | int | None = None, *, sample: int = 1000):
        """Quality of a version's IDs: collision rate, semantic-unique share, largest bucket
        and bucket-size Gini, per-level usage and perplexity, reconstruction error (plain
        residuals) and neighbourhood agreement at each depth (``sample`` items, exact
        cosine neighbours)."""
        from . import analysis

        if not 10 <= sample <= 100_000:
            raise InputError(f"sample must be between 10 and 100000, got {sample}",
                             source="--sample")
        return analysis.stats(self._tx, version, sample=sample)

    def verify(self) -> verifying.VerifyReport:
        """Check every invariant of the store (see :mod:`registry.verifying`); the report
        lists each violation with the rows involved."""
        from . import verifying

        return verifying.verify(self._tx)

    def versions(self) -> list[VersionSummary]:
        """Every version, oldest first, with its aliases and number of items with an ID."""
        with self._tx(write=False) as conn:
            return [VersionSummary(v, n) for v, n in versions.all_versions(conn)]

    def version(self, version: str | int | None = None) -> Version:
        """One version by number, name or alias (default: the active one)."""
        with self._tx(write=False) as conn:
            return versions.resolve(conn, version)

    def codebooks(self, version: str | int | None = None) -> list[np.ndarray]:
        """A version's codebooks, checked against their stored sha256."""
        from .store import codebooks

        with self._tx(write=False) as conn:
            return codebooks.read(conn, versions.resolve(conn, version).number)


def _shown(keys: list[str], most: int = 5) -> str:
    text = ", ".join(repr(k if len(k) <= 60 else k[:60] + "...") for k in keys[:most])
    return text + (f" and {len(keys) - most} more" if len(keys) > most else "")
