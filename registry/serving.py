"""What ``registry serve`` holds in memory, and how it stays current: the published versions
it answers from (one :class:`View` each), the live API tokens, and the aliases.

A refresher thread reads a few small figures every ``poll`` seconds: the live tokens, the
aliases and versions, and for each view held its ID count, the count of items not live and
the time metadata last changed. A view then gains the IDs assigned since (merged into its
snapshot, no reload) and the metadata edited since; an item removed or brought back reloads
it whole, in the background, while the old view goes on answering. So an alias moved by
another process, a revoked token or a new ID is seen within ``poll`` seconds (plus a
reload's time for a version not held yet).

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
from dataclasses import dataclass
from datetime import datetime

from . import tokens
from .errors import NotFoundError
from .snapshot import Snapshot, _published, _state
from .store import assignments, items, versions
from .store.db import Database
from .store.tokens import Token
from .store.versions import Version

log = logging.getLogger("registry.serve")

# how often the refresher looks (seconds): alias moves and revocations are seen within this
POLL = 0.5
# the versions held besides the ones the aliases name, least recently asked for dropped first
KEEP = 4


@dataclass
class View:
    """One published version in memory: its snapshot (resolve, prefixes), each key's ID
    (:meth:`Snapshot.id_key`), the metadata of items that have some (as JSON text), and
    what the database said when the view was last brought up to date."""

    version: Version
    snapshot: Snapshot
    by_key: dict[str, int | tuple[int, int]]
    meta: dict[str, str]
    last_item: int  # the largest item id among its IDs: IDs assigned since lie above it
    not_live: int  # items removed or without an embedding, when read
    meta_mark: datetime | None
    loaded_at: float
    _books: list | None = None

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


def _view(db: Database, number: int) -> View:
    """A version read whole."""
    with db.tx(write=False) as conn:
        v = _published(conn, number)
        ids, codes, disamb, removed, keys, metas = assignments.served(conn, number)
        state = _state(conn, number)
        mark = items.meta_mark(conn)
    snap = Snapshot(v, codes, disamb, removed, keys, ref=number, tx=db.tx, state=state)
    by_key = dict(zip(keys, _id_keys(snap, codes, disamb), strict=True))
    meta = {k: m for k, m in zip(keys, metas, strict=True) if m is not None and m != "null"}
    return View(v, snap, by_key, meta, int(ids.max(initial=0)), state[1], mark,
                time.monotonic())


def _id_keys(snap: Snapshot, codes, disamb) -> list:
    if snap._fits:
        return (codes * snap._radix + disamb).tolist()
    return list(zip(codes.tolist(), disamb.tolist(), strict=True))


class Served:
    """The server's state: views of published versions, tokens, aliases; kept current by
    :meth:`start`'s thread (or by calling :meth:`refresh`)."""

    def __init__(self, db: Database, *, poll: float = POLL, keep: int = KEEP,
                 auth: bool = True):
        self.db = db
        self.poll = poll
        self.keep = keep
        self.auth = auth
        self._views: OrderedDict[int, View] = OrderedDict()
        self._loading: dict[int, threading.Lock] = {}
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

    def number(self, ref: str | int | None) -> int:
        """The version number ``ref`` (number, name or alias; None: the active alias) names
        now, as of the last refresh; the database says what is wrong with one it lacks."""
        name = "active" if ref is None else str(ref)
        found = self._names.get(name)
        if found is None and name.isdigit() and int(name) in self._numbers:
            found = int(name)
        if found is None:
            with self.db.tx(write=False) as conn:
                return versions.resolve(conn, ref).number
        return found

    def view(self, ref: str | int | None) -> View:
        """The view of the version ``ref`` names, loaded (and kept) on first use."""
        number = self.number(ref)
        with self._lock:
            held = self._views.get(number)
            if held is not None:
                self._views.move_to_end(number)
                return held
            loading = self._loading.setdefault(number, threading.Lock())
        with loading:  # one load per version, however many requests ask at once
            with self._lock:
                held = self._views.get(number)
            if held is None:
                held = _view(self.db, number)
                self.reloads += 1
                gc.freeze()  # millions of long-lived objects: no more full collections over them
                with self._lock:
                    self._views[number] = held
                    self._drop_unused()
            return held

    def held_view(self, ref: str | int | None) -> View | None:
        """The view ``ref`` names if it is held and named by the last refresh, else None
        (without waiting or reading the database)."""
        name = "active" if ref is None else str(ref)
        number = self._names.get(name)
        if number is None and name.isdigit():
            number = int(name)
        return self._views.get(number)

    def held(self) -> list[View]:
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
                live = {t.digest: t for t in tokens.store.listing(conn)
                        if t.revoked_at is None}
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
            count, not_live = _state(conn, number)
            mark = items.meta_mark(conn)
            grown = changed = None
            if count != len(view.snapshot) and not_live == view.not_live:
                grown = assignments.served(conn, number, view.last_item)
            if mark is not None and mark != view.meta_mark:
                changed = items.meta_changes(conn, view.meta_mark or mark)
            state = versions.get(conn, number)
        if not_live != view.not_live or (
                grown is not None and len(view.snapshot) + len(grown[0]) != count):
            fresh = _view(self.db, number)  # removals, or IDs given to older items: whole
            self.reloads += 1
            gc.freeze()
            self._replace(number, fresh)
            return
        if grown is not None and len(grown[0]):
            ids, codes, disamb, removed, keys, metas = grown
            view.snapshot = view.snapshot.grown(codes, disamb, removed, keys)
            view.by_key.update(zip(keys, _id_keys(view.snapshot, codes, disamb), strict=True))
            view.meta.update((k, m) for k, m in zip(keys, metas, strict=True)
                             if m is not None and m != "null")
            view.last_item = max(view.last_item, int(ids.max()))
            self.merges += 1
        if changed is not None:
            for key, meta in changed:
                if meta is None or meta == "null":
                    view.meta.pop(key, None)
                else:
                    view.meta[key] = meta
            view.meta_mark = mark
        view.version = state

    def _replace(self, number: int, view: View) -> None:
        with self._lock:
            if number in self._views:
                self._views[number] = view
