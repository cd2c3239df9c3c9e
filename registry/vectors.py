"""Checking vectors where they enter: numpy only, for the engine and the file readers alike."""

from __future__ import annotations

import numpy as np

from .errors import InputError

# numbers checked for NaN and infinity at a time
_FINITE_BLOCK = 1 << 20


def check_vectors(x: object, source: str) -> np.ndarray:
    """A non-empty 2-d array of finite real numbers, as contiguous float32 (a copy only
    when the input is not that already)."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"expected a non-empty 2-d array of vectors, got shape {arr.shape}",
                         source=source)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)
                                     or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"vectors must be real numbers, got dtype {arr.dtype}", source=source)
    with np.errstate(over="ignore"):  # too large for float32 becomes inf, reported below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    # a block of rows at a time: one boolean per number for a million vectors is 384 MB
    step = max(1, _FINITE_BLOCK // out.shape[1])
    for start in range(0, out.shape[0], step):
        finite = np.isfinite(out[start:start + step]).all(axis=1)
        if not finite.all():
            raise InputError("vector contains NaN or infinity (or a number too large for "
                             "float32)", source=source,
                             row=start + int(np.flatnonzero(~finite)[0]) + 1)
    return out
