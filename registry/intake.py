"""Items in, their IDs out, in one call: what ``POST /v1/items`` of ``registry serve`` does.

New and changed items are stored as ``add`` stores them, then every item of a published
version without an ID gets one (as ``assign`` gives it), and each key's ID in that version
is read back. Sending the same items again changes nothing and answers the same IDs. Each
step commits before the next: an interruption leaves items stored (and perhaps assigned),
never half an ID, and a retry of the same request finishes the work.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import defaults
from .errors import StateError
from .store import versions
from .store.db import Tx
from .store.schema import State
from .store.versions import Version


@dataclass
class Registered:
    """What became of each item (``outcomes``: added, changed, restored or unchanged) and
    its ID in ``version`` (None where it has none: ``full`` items found their code tuple
    full)."""

    version: Version
    keys: list[str]
    outcomes: list[str]
    ids: list[str | None]
    full: int

    def rows(self) -> list[dict]:
        """One dict per item: key, outcome, id."""
        return [{"key": k, "outcome": o, "id": i}
                for k, o, i in zip(self.keys, self.outcomes, self.ids, strict=True)]


class Intake:
    """Registers items into the published version a reference names; holds the text model
    once loaded (the first request with texts loads it)."""

    def __init__(self, tx: Tx):
        self._tx = tx
        self._embedder = None
        self._lock = threading.Lock()

    def _text_model(self):
        with self._lock:
            if self._embedder is None:
                from .embed import Embedder

                self._embedder = Embedder(None)
            return self._embedder

    def register(self, keys: Sequence[str], *, vectors: np.ndarray | None = None,
                 texts: Sequence[str] | None = None,
                 metas: Sequence[dict | None] | None = None,
                 version: str | int | None = None, vector_model: str | None = None,
                 source: str = "items") -> Registered:
        """Store the items (vectors, or texts to embed), give every item of ``version``
        (default: the active one; frozen) that lacks an ID one, and say what became of
        each. A metadata entry :data:`registry.catalog.KEEP` keeps what the item has;
        ``vector_model``: the model the vectors come from (see
        :func:`registry.embed.vector_space`)."""
        from . import assigning, catalog
        from .reads import Reader

        with self._tx(write=False) as conn:
            v = versions.resolve(conn, version)
        if v.state != State.FROZEN:
            raise StateError(f"{v.label} is {v.state}: new items get IDs in a frozen version "
                             "only")
        incoming = catalog.given(keys, vectors, texts, metas, source)
        space = None
        if vector_model is not None:
            from .embed import vector_space

            space = vector_space(vector_model)
        added = catalog.add(self._tx, incoming,
                            embedder=self._text_model() if texts is not None else None,
                            vector_space=space, outcomes=True)
        done = assigning.assign(self._tx, v.number, defaults.ASSIGN_BATCH)
        found = {r.key: r.id for r in Reader(self._tx).get(incoming.keys, v.number)}
        return Registered(v, incoming.keys, [added.outcomes[k] for k in incoming.keys],
                          [found.get(k) for k in incoming.keys], done.full)
