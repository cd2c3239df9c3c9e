"""The Registry facade: one method per user action, each calling the module that does it
(catalog, training, assigning, lifecycle, reads, export, analysis, verifying), as alembic's
``command`` functions do.

This module stays light to import: numpy, faiss and the write-side modules are imported
inside the methods that need them, so that ``get``, ``lookup`` and ``versions`` start fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import defaults
from .reads import GetResult, IdRecord, LookupResult, Reader
from .store import db, versions
from .store.versions import Version

if TYPE_CHECKING:
    import numpy as np

    from .analysis import DiffReport, DriftReport, StatsReport
    from .assigning import AssignResult
    from .catalog import AddResult, ItemsReport, Progress, RemoveResult
    from .export import ExportResult
    from .lifecycle import RollbackResult, StateChange
    from .snapshot import Resolution, Snapshot
    from .store.tokens import Token
    from .training import TrainRequest, TrainSummary
    from .verifying import VerifyReport

__all__ = ["GetResult", "IdRecord", "InitResult", "LookupResult", "Registry",
           "VersionSummary"]


@dataclass
class InitResult:
    """The database made or upgraded, and its schema revision before and after."""

    url: str
    before: str | None
    after: str | None

    def to_dict(self) -> dict:
        return {"database": self.url, "schema_before": self.before, "schema": self.after}


@dataclass
class VersionSummary:
    """A version and how many items have an ID in it now."""

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
        self._reader = Reader(self._tx)

    @property
    def database(self) -> db.Database:
        """The database and its transactions, for code that works below the facade (the
        service's in-memory views)."""
        return self._db

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
            source: str = "items", progress: Progress | None = None,
            **options) -> AddResult:
        """Register items given as vectors, or as texts to embed. ``options`` are those of
        :class:`registry.catalog.EmbedOptions`: the ``model`` texts are embedded with
        (default all-MiniLM-L6-v2; see :class:`registry.embed.Embedder`), the
        ``vector_model`` vectors come from (see :func:`registry.embed.vector_space`),
        ``dtype``, ``reembed``, ``commit_every``... Unchanged items are left alone and
        never embedded twice."""
        from . import catalog

        return catalog.add_items(self._tx, keys, vectors, texts, metas, source=source,
                                 progress=progress, **options)

    def add_file(self, path: str | Path, *, key: str | None = None, text: str | None = None,
                 vector: str | None = None, keys_file: str | Path | None = None,
                 progress: Progress | None = None, **options) -> AddResult:
        """Register the rows of a JSONL / CSV / Parquet file with a key column (``key``,
        default ``key``) and a text column or template (``text``) or a vector column
        (``vector``), or of a .npy matrix with a keys file. The whole file is checked before
        anything is written; embedding and writing then go batch by batch. ``options`` as
        for :meth:`add`.

        ``path`` may also be a directory or a glob pattern of Parquet shards
        (``part-*.parquet``): every shard is checked, then they are read and written a
        record batch at a time (see :mod:`registry.shards`)."""
        from . import catalog

        return catalog.add_file(self._tx, path, key=key, text=text, vector=vector,
                                keys_file=keys_file, progress=progress, **options)

    def embeddings(self, keys: Sequence[str]) -> np.ndarray:
        """The stored embeddings of ``keys`` as float32 rows, in the order given."""
        from . import catalog

        return catalog.embeddings(self._tx, keys)

    def remove(self, keys: Sequence[str]) -> RemoveResult:
        """Tombstone items: they keep their IDs in existing versions (never handed to another
        item) but get none in new versions. Unknown keys are an error and remove nothing."""
        from . import catalog

        return catalog.remove(self._tx, keys)

    def items(self, *, status: str = "live", changed_since: str | int | None = None,
              new_since: str | int | None = None,
              limit: int = defaults.ITEMS_LIMIT) -> ItemsReport:
        """Counts of live and removed items, and the first ``limit`` items of ``status``
        (live / removed / all), optionally only those changed (or new) since a version was
        trained."""
        from . import catalog

        return catalog.report(self._tx, status=status, changed_since=changed_since,
                              new_since=new_since, limit=limit)

    # -- versions ------------------------------------------------------------------------------

    def train(self, request: TrainRequest | None = None, **fields) -> TrainSummary:
        """Train a new draft version on every live item and give each item an ID in it: a
        :class:`registry.training.TrainRequest`, or its fields as keywords
        (``codebook_size=256, name="spring"``). With ``from_version`` the new version starts
        from that version's codebooks and its items keep their codes (and full IDs) wherever
        the data allows (see :mod:`registry.stable`)."""
        from . import training

        return training.train(self._tx, request, **fields)

    def freeze(self, version: str | int, *, reason: str | None = None) -> StateChange:
        """Publish a draft: from now on its codebooks and issued IDs never change."""
        from . import lifecycle

        return lifecycle.freeze(self._tx, version, reason)

    def activate(self, version: str | int, *, alias: str = defaults.ALIAS,
                 reason: str | None = None, actor: str | None = None,
                 assign_first: bool = False) -> StateChange:
        """Point ``alias`` (default ``active``) at a frozen version; ``actor`` names who in
        the history. ``assign_first``: give the items registered since the version was
        trained their IDs in it before the alias moves (see
        :func:`registry.lifecycle.activate_filled`)."""
        from . import lifecycle

        if assign_first:
            return lifecycle.activate_filled(self._tx, version, alias, reason, actor)
        return lifecycle.activate(self._tx, version, alias, reason, actor)

    def retire(self, version: str | int, *, reason: str | None = None) -> StateChange:
        """Take a version out of use: it stays readable, but gets no new IDs and cannot be
        activated again. A version that an alias points at cannot be retired."""
        from . import lifecycle

        return lifecycle.retire(self._tx, version, reason)

    def delete(self, version: str | int, *, reason: str | None = None) -> StateChange:
        """Delete a draft that was a mistake: its codebooks and IDs, never published, go;
        its number is never given again, and the history keeps its train and this delete.
        Frozen and retired versions are never deleted."""
        from . import lifecycle

        return lifecycle.delete(self._tx, version, reason)

    def rollback(self, to: str | int | None = None, *, alias: str = defaults.ALIAS,
                 reason: str | None = None, actor: str | None = None) -> RollbackResult:
        """Point ``alias`` back at the version it pointed at before (or at ``to``). The items
        registered since that version was trained get their IDs in it first, and the alias
        moves last (see :func:`registry.lifecycle.rollback`). Nothing is deleted; rolling
        forward again is another ``activate``."""
        from . import lifecycle

        return lifecycle.rollback(self._tx, to, alias, reason, actor)

    def history(self, version: str | int | None = None, *,
                limit: int = defaults.HISTORY_LIMIT) -> list[versions.Event]:
        """The event log, newest first: train, freeze, activate, assign, retire, rollback,
        delete; ``version`` (a number, name or alias, or the number of a deleted draft) keeps
        that version's."""
        with self._tx(write=False) as conn:
            return versions.history(conn, version, limit)

    def assign(self, version: str | int | None = None, *,
               batch_size: int = defaults.ASSIGN_BATCH,
               workers: int = defaults.WORKERS) -> AssignResult:
        """Give every live item without an ID in the version one, against its codebooks.

        Works batch by batch, one transaction each: an interrupted run keeps the finished
        batches and a rerun picks up the rest. Existing IDs are never touched. ``workers``
        processes share the work (in parallel on PostgreSQL, one batch at a time on SQLite);
        so do assigners started on other hosts against the same PostgreSQL database.
        """
        from . import assigning

        return assigning.run(self._tx, self.url, version, batch_size, workers)

    # -- reads -------------------------------------------------------------------------------

    def get(self, keys: Sequence[str], version: str | int | None = None, *,
            metadata: bool = False) -> GetResult:
        """The ID of each key in the version (default: the active one), in the order given;
        the keys without one are listed apart (see :class:`registry.reads.GetResult`).
        ``metadata`` adds each item's metadata to its record."""
        return self._reader.get(keys, version, metadata=metadata)

    def lookup(self, query: str, version: str | int | None = None, *,
               limit: int | None = None, metadata: bool = False,
               count: bool = False) -> LookupResult:
        """A full ID gives its item; a prefix (``12`` or ``12-4``) the first ``limit``
        (default 20) items under it and, with ``count``, how many there are in all (one
        more index range read, where there are more than ``limit``). ``metadata`` adds
        each item's metadata to its record."""
        return self._reader.lookup(query, version, limit=limit, metadata=metadata,
                                   count=count)

    def resolve(self, ids: Sequence[str], version: str | int | None = None, *,
                nearest: int = 0, metadata: bool = False) -> Resolution:
        """Model output back to items, one row per input in input order: canonical IDs,
        their token form (tokens apart or not) and prefixes of either, each found, removed,
        prefix (with the items under it), unknown or malformed (see
        :class:`registry.snapshot.Resolution`); a bad row never stops the batch. ``nearest``
        adds, for a well-formed ID no item holds, the issued IDs closest to it; ``metadata``
        the found items' metadata."""
        from . import snapshot

        return snapshot.resolve(self._tx, ids, version, nearest=nearest, metadata=metadata)

    def snapshot(self, version: str | int | None = None) -> Snapshot:
        """A frozen or retired version's IDs in memory (default: the active one's), to
        resolve, count and list prefixes and say which codes may follow a prefix without the
        database; :meth:`registry.snapshot.Snapshot.is_current` says when to take another."""
        from . import snapshot

        return snapshot.take(self._tx, version)

    def export(self, version: str | int | None, path: str | Path, *, style: str = "ids",
               vocab: str | Path | None = None) -> ExportResult:
        """Write every item's key, ID and codes in ``version`` to ``path`` (Parquet, CSV or
        JSONL by suffix); ``style="tokens"`` gives the ID as language-model tokens
        (``<a_12><b_4><c_9><d_0>``) and ``vocab`` the version's vocabulary, every token it
        will ever emit."""
        from . import export

        return export.export(self._tx, version, path, style=style, vocab=vocab)

    def diff(self, v1: str | int, v2: str | int, *,
             remap: str | Path | None = None) -> DiffReport:
        """Churn at each depth for the items in both versions, items only in one, centroid
        movement; labels aligned first when neither version was trained from the other.
        ``remap`` writes key, old ID, new ID for every item."""
        from . import analysis

        return analysis.diff(self._tx, v1, v2, remap=remap)

    def drift(self, version: str | int | None = None,
              against: str | int | None = None) -> DriftReport:
        """How far the items assigned into a version after training have moved from those it
        was trained on (or, with ``against``, a newer version's training items from this
        one's), with a verdict: ok, watch or retrain."""
        from . import analysis

        return analysis.drift(self._tx, version, against)

    def stats(self, version: str | int | None = None, *,
              sample: int = defaults.STATS_SAMPLE) -> StatsReport:
        """Quality of a version's IDs: the raw collision rate, the semantic-unique share,
        largest bucket and bucket-size Gini, per-level usage and perplexity, reconstruction
        error (plain residuals) and neighbourhood agreement at each depth (``sample`` items,
        exact cosine neighbours)."""
        from . import analysis

        return analysis.stats(self._tx, version, sample=sample)

    def verify(self) -> VerifyReport:
        """Check every invariant of the store (see :mod:`registry.verifying`); the report
        lists each violation with the rows involved."""
        from . import verifying

        return verifying.verify(self._tx)

    def create_token(self, name: str, scope: str) -> tuple[Token, str]:
        """A new API token for ``registry serve`` with ``scope`` (read, write or admin) and
        its secret: returned here once, kept only as a digest."""
        from . import tokens

        return tokens.create(self._tx, name, scope)

    def tokens(self) -> list[Token]:
        """Every API token, revoked ones included (never their secrets)."""
        from . import tokens

        return tokens.listing(self._tx)

    def revoke_token(self, name: str) -> tuple[Token, bool]:
        """Revoke an API token: a server stops taking it within seconds. Also says whether
        it was live until now."""
        from . import tokens

        return tokens.revoke(self._tx, name)

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
