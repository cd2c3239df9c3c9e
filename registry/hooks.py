"""Pause points for crash tests: with ``REGISTRY_PAUSE_AT=<point>`` in its environment a
process stops at that point, first creating the file ``REGISTRY_PAUSE_MARKER`` (if set) so
that the test knows it got there, and waits to be killed. Unset, a pause point costs one
environment lookup."""

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
