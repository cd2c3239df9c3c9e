"""Quality figures of a version's codes, one definition each (see DESIGN.md, "Metrics")."""

from __future__ import annotations

import numpy as np


def collision_rate(codes: np.ndarray) -> float:
    """1 - distinct code tuples / N, before disambiguation.

    ``codes`` is either (N, L) code tuples or (N,) packed codes; both give the same figure.
    """
    codes = np.asarray(codes)
    n = codes.shape[0]
    if n == 0:
        return 0.0
    distinct = np.unique(codes, axis=0).shape[0] if codes.ndim == 2 else np.unique(codes).size
    return 1.0 - distinct / n
