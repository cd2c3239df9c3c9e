"""What ``registry serve`` holds in memory, and how it stays current: the published versions
it answers from (one :class:`View` each), the live API tokens, and the aliases.

A refresher thread reads a few small figures every ``poll`` seconds: the live tokens, the
aliases and versions, and for each view held its ID count and when an item was last touched
(metadata, content or removal changed). A view then gains the IDs assigned since (merged into
its snapshot, no reload) and the metadata and removed flags of the items touched since. Only
IDs given to items older than the view (rare: a rollback's) make it read the version whole,
in a thread of its own while the old view goes on answering. So an alias moved by another
process, a revoked token, a new ID or a removal is seen within ``poll`` seconds (plus a
first read for a version not held yet).

No web framework here: :mod:`registry.service` turns requests into calls on :class:`Served`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from . import tokens
from .errors import NotFoundError
from .snapshot import Snapshot, published
from .store import assignments, items, versions
from .store import tokens as stored_tokens
from .store.db import Database
from .store.tokens import Token
from .store.versions import Version

log = logging.getLogger("registry.serve")

# how often the refresher looks (seconds): alias moves and revocations are seen within this
POLL = 0.5
# the versions held besides the ones the aliases name, least recently asked for dropped first
KEEP_VERSIONS = 4
# for this long after the newest touch moves, the items touched up to this long before it
# are read again at each look: a touch is stamped when its transaction starts and may commit
# after a later one; reading a change twice is harmless
OVERLAP = timedelta(seconds=60)
LONG_AGO = datetime.min.replace(tzinfo=UTC)


@dataclass
class View:
    """One published version in memory: its snapshot (resolve, prefixes), each key's ID
    (:meth:`Snapshot.id_key`), the metadata of items that have some (as JSON text), and
    how far the database was read."""

    version: Version
    snapshot: Snapshot
    by_key: dict[str, int | tuple[int, int]]
    meta: dict[str, str]
    last_item: int  # the largest item id among its IDs: IDs assigned since lie above it
    touched: datetime | None  # the items touched up to then are read
    touched_changed: datetime = LONG_AGO  # when the mark last moved, by the database's clock
    _books: list | None = field(default=None, repr=False)

    def codebooks(self, db: Database) -> list:
        """The version's codebooks (read once: a published version's never change)."""
        if self._books is None:
            from .store import codebooks

            with db.tx(write=False) as conn:
                self._books = codebooks.read(conn, self.version.number)
        return self._books

    @property
    def label(self) -> dict:
        """The version that answered, as every response names it."""
        return {"number": self.version.number, "name": self.version.name}

    def item(self, key: str) -> dict | None:
        """key, ID, state (live or removed) and metadata of ``key``'s ID, else None."""
        found = self.by_key.get(key)
        if found is None:
            return None
        held = self.snapshot.one(found)
        if held is None:  # its key arrived before the snapshot that holds it: a moment
            return None
        meta = self.meta.get(key)
        return {"key": key, "id": held[0], "state": "removed" if held[1] else "live",
                "metadata": None if meta is None else json.loads(meta)}

    def grow(self, rows) -> None:
        """Take in IDs assigned since (:func:`registry.store.assignments.served` rows)."""
        ids, codes, disamb, removed, keys, metas = rows
        self.snapshot = self.snapshot.grown(codes, disamb, removed, keys)
        self.by_key.update(zip(keys, self.snapshot.id_keys(codes, disamb), strict=True))
        self.meta.update((k, m) for k, m in zip(keys, metas, strict=True) if _has(m))
        self.last_item = max(self.last_item, int(ids.max()))

    def touch(self, rows: list[tuple[str, str | None, bool]]) -> None:
        """Take in the metadata and removed flags of items touched since."""
        flags = self.snapshot.removed
        for key, meta, removed in rows:
            found = self.by_key.get(key)
            if found is None:
                continue  # no ID here
            if _has(meta):
                self.meta[key] = meta
            else:
                self.meta.pop(key, None)
            at = self.snapshot.place(found)
            if at >= 0:
                flags[at] = removed


def _has(meta: str | None) -> bool:
    return meta is not None and meta != "null"


def read_view(db: Database, number: int) -> View:
    """A published version read whole."""
    with db.tx(write=False) as conn:
        mark = items.touched_mark(conn)  # first: what is touched while reading is read again
        v = published(conn, number)
        ids, codes, disamb, removed, keys, metas = assignments.served(conn, number)
    snap = Snapshot(v, codes, disamb, removed, keys)
    by_key = dict(zip(keys, snap.id_keys(codes, disamb), strict=True))
    meta = {k: m for k, m in zip(keys, metas, strict=True) if _has(m)}
    return View(v, snap, by_key, meta, int(ids.max(initial=0)), mark)


class Served:
    """The server's state: views of published versions, tokens, aliases; kept current by
    :meth:`start`'s thread (or by calling :meth:`refresh`)."""

    def __init__(self, db: Database, *, poll: float = POLL, keep: int = KEEP_VERSIONS,
                 auth: bool = True):
        self.db = db
        self.poll = poll
        self.keep = keep
        self.auth = auth
        self._views: OrderedDict[int, View] = OrderedDict()
        self._loading: dict[int, threading.Lock] = {}
        self._reloading: set[int] = set()
        self._lock = threading.RLock()  # views and loads
        self._refreshing = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._names: dict[str, int] = {}  # aliases and version names -> numbers
        self._aliases: set[str] = set()
        self._numbers: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshed_at = 0.0
        self.refresh_errors = 0
        self.reloads = 0
        self.merges = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Read tokens and aliases, load the active version's view (where there is one),
        and start the refresher."""
        self.refresh()
        with contextlib.suppress(NotFoundError):  # nothing active yet: loaded when asked
            self.view(None)
        self._thread = threading.Thread(target=self._run, name="registry-refresh",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the refresher."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def ready(self) -> bool:
        """Whether the last refresh is recent: the database answers."""
        return time.monotonic() - self.refreshed_at < max(5.0, 10 * self.poll)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.refresh()
            except Exception:  # the database away for a moment: keep serving, try again
                self.refresh_errors += 1
                log.exception("refresh failed")

    # -- tokens --------------------------------------------------------------------------

    def caller(self, secret: str) -> Token | None:
        """The live token whose secret this is, else None."""
        return tokens.check(self._tokens, secret)

    # -- views ---------------------------------------------------------------------------

    def _known(self, ref: str | int | None) -> int | None:
        """The number ``ref`` names as of the last refresh, else None."""
        name = "active" if ref is None else str(ref)
        found = self._names.get(name)
        if found is None and name.isascii() and name.isdigit() and int(name) in self._numbers:
            found = int(name)
        return found

    def number(self, ref: str | int | None) -> int:
        """The version number ``ref`` (number, name or alias; None: the active alias) names
        now, as of the last refresh; the database says what is wrong with one it lacks."""
        found = self._known(ref)
        if found is None:
            with self.db.tx(write=False) as conn:
                return versions.resolve(conn, ref).number
        return found

    def view(self, ref: str | int | None) -> View:
        """The view of the version ``ref`` names, loaded (and kept) on first use."""
        number = self.number(ref)
        held = self._held(number)
        if held is not None:
            return held
        with self._lock:
            loading = self._loading.setdefault(number, threading.Lock())
        with loading:  # one load per version, however many requests ask at once
            held = self._held(number)
            if held is None:
                held = read_view(self.db, number)
                self.reloads += 1
                gc.freeze()  # millions of long-lived objects: no more full collections over them
                with self._lock:
                    self._views[number] = held
                    self._drop_unused()
            return held

    def held_view(self, ref: str | int | None) -> View | None:
        """The view ``ref`` names if it is held, else None (without waiting or reading the
        database)."""
        number = self._known(ref)
        return None if number is None else self._held(number)

    def _held(self, number: int) -> View | None:
        with self._lock:
            held = self._views.get(number)
            if held is not None:
                self._views.move_to_end(number)
            return held

    def held(self) -> list[View]:
        """The views held, least recently asked for first."""
        with self._lock:
            return list(self._views.values())

    def _drop_unused(self) -> None:
        named = {n for a, n in self._names.items() if a in self._aliases}
        spare = [n for n in self._views if n not in named]
        for n in spare[:max(0, len(spare) - self.keep)]:
            del self._views[n]

    # -- refresh -------------------------------------------------------------------------

    def refresh(self) -> None:
        """One round: tokens, aliases and versions, then each view brought up to date."""
        with self._refreshing:
            with self.db.tx(write=False) as conn:
                live = {t.digest: t for t in stored_tokens.active(conn)}
                names, numbers, aliases = {}, set(), set()
                for v, _ in versions.all_versions(conn, counts=False):
                    numbers.add(v.number)
                    if v.name:
                        names[v.name] = v.number
                    for a in v.aliases:
                        names[a] = v.number
                        aliases.add(a)
            self._tokens, self._names, self._numbers = live, names, numbers
            self._aliases = aliases
            for view in self.held():
                if view.version.number in numbers:
                    self._update(view)
                else:
                    with self._lock:
                        self._views.pop(view.version.number, None)
            self.refreshed_at = time.monotonic()

    def _update(self, view: View) -> None:
        number = view.version.number
        with self.db.tx(write=False) as conn:
            mark = items.touched_mark(conn)
            now = items.clock(conn)
            count = assignments.count(conn, number)
            grown = touched = None
            if count > len(view.snapshot):
                grown = assignments.served(conn, number, view.last_item)
            if mark is not None and mark != view.touched:
                view.touched_changed = now
            if mark is not None and now - view.touched_changed < OVERLAP:
                # for a while after each new mark, what was touched just before it again:
                # a touch stamped at its transaction's start may commit after the mark
                touched = items.touched_since(conn, min(view.touched or mark, mark) - OVERLAP)
            view.version = versions.get(conn, number)
        if grown is not None and len(grown[0]):
            view.grow(grown)
            self.merges += 1
        if touched:
            view.touch(touched)
        view.touched = mark
        if len(view.snapshot) != count:  # IDs given to items older than the view's newest
            self._reload_later(number)

    def _reload_later(self, number: int) -> None:
        """Read a version whole in a thread of its own; the view held answers meanwhile."""
        with self._lock:
            if number in self._reloading:
                return
            self._reloading.add(number)

        def reload() -> None:
            try:
                fresh = read_view(self.db, number)
                gc.freeze()
                with self._lock:
                    if number in self._views:
                        self._views[number] = fresh
                self.reloads += 1
            except Exception:
                self.refresh_errors += 1
                log.exception("reading version %s failed", number)
            finally:
                with self._lock:
                    self._reloading.discard(number)

        threading.Thread(target=reload, name=f"registry-reload-{number}", daemon=True).start()
