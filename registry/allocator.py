"""Process-wide memory settings for the commands that work through large arrays (add, train,
assign, diff, drift, stats, verify, demo). The CLI sets them once for such a command; an
application that calls the API with large batches may call :func:`tune` itself.

Each fresh page of memory costs a fault when it is first written. glibc maps every array over
32 MB afresh and returns it when it is freed, so each batch of a large command pays for its
arrays again; and numpy asks the kernel for huge pages for them, which, where free memory is
fragmented, the kernel first compacts. With both settings a large assign is fastest and
steadiest from run to run (BENCHMARKS.md, Design figures: allocator settings).
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_INT_MAX = 2**31 - 1


def _mallopt():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def give_back(threshold: int = 1 << 20) -> bool:
    """For a long-running server, the other way round: every block over ``threshold`` bytes
    is mapped afresh and returned to the system when freed (glibc otherwise raises its
    threshold as large blocks come and go, and keeps their pages), so that a view replaced by
    a grown one leaves no pages held (BENCHMARKS.md, Design figures: giving freed blocks
    back). True where glibc took the setting."""
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def tune() -> bool:
    """Keep freed memory for the next array and fault in small pages; True where glibc took
    the setting (elsewhere only numpy's part applies)."""
    import numpy as np

    set_advice = getattr(np._core.multiarray if hasattr(np, "_core") else np.core.multiarray,
                         "_set_madvise_hugepage", None)
    if set_advice is not None:
        set_advice(False)
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _INT_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                           _INT_MAX))
