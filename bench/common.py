"""Shared pieces of the benchmarks: data, databases, timing, and the BENCHMARKS.md table."""

from __future__ import annotations

import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = ROOT.parent / "shared" / "data"
PG_URL = os.environ.get("REGISTRY_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def clustered_vectors(n: int, dim: int, seed: int = 0, clusters: int = 2000) -> np.ndarray:
    """Generated float32 vectors with cluster structure (a mixture of Gaussians)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    out = centres[rng.integers(0, clusters, n)]
    out += 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
    return out


def clustered_blocks(start: int, stop: int, dim: int, seed: int = 0, clusters: int = 2000,
                     block: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
    """Rows ``start`` up to ``stop`` of an endless catalog like :func:`clustered_vectors`
    (other numbers), a block at a time: (first row, float32 block). Row i is the same
    whatever range it is asked in, so a catalog of ten million never sits in memory."""
    centres = np.random.default_rng(seed).standard_normal((clusters, dim), dtype=np.float32)
    for first in range(start - start % block, stop, block):
        rng = np.random.default_rng([seed, first // block])
        out = centres[rng.integers(0, clusters, block)]
        out += 0.6 * rng.standard_normal((block, dim), dtype=np.float32)
        lo, hi = max(start, first), min(stop, first + block)
        yield lo, out[lo - first:hi - first]


def debian() -> tuple[np.ndarray, np.ndarray]:
    """The full Debian catalog of ../shared/data: float32 embeddings and each package's
    section."""
    import gzip
    import json

    vectors = np.load(DEBIAN / "debian_minilm_f16.npy").astype(np.float32)
    with gzip.open(DEBIAN / "debian_catalog.jsonl.gz", "rt") as f:
        sections = np.array([json.loads(line)["section"] for line in f])
    return vectors, sections


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        return
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeat`` runs, and all of them."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
           f"Python {platform.python_version()}"


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def record(section: str, body: str) -> None:
    """Replace (or append) ``## section`` in BENCHMARKS.md with ``body``."""
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    head = f"## {section}\n"
    block = head + "\n" + body.strip() + "\n"
    if head in current:
        start = current.index(head)
        nxt = current.find("\n## ", start + len(head))
        current = current[:start] + block + ("" if nxt < 0 else current[nxt:])
    else:
        current = current.rstrip() + "\n\n" + block
    path.write_text(current)
