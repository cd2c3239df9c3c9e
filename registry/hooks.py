"""Pause points for crash tests: with ``REGISTRY_PAUSE_AT=<point>`` in its environment a
process stops at that point, first creating the file ``REGISTRY_PAUSE_MARKER`` (if set) so
that the test knows it got there, and waits to be killed. Unset, a pause point costs one
environment lookup.

The points: ``train-trained`` (codes computed, nothing written), ``train-written`` (a new
version written, not committed), ``add-written`` (a batch of items written, not committed),
``add-committed`` (after each committed batch), ``assign-claimed`` (a batch claimed),
``assign-written`` (its IDs written, not committed) and ``rollback-assigned`` (the version
rolled back to has its new IDs, the alias has not moved yet)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def pause_point(name: str) -> None:
    if os.environ.get("REGISTRY_PAUSE_AT") != name:
        return
    marker = os.environ.get("REGISTRY_PAUSE_MARKER")
    if marker:
        Path(marker).touch()
    while True:
        time.sleep(1)
