"""Training a chunk at a time (registry.chunked) gives the codebooks, codes and IDs of the
in-memory engine, on catalogs that span many chunks."""

import numpy as np
import pytest

from registry import chunked, engine
from registry.store import scan

from .conftest import make_keys, make_vectors

CASES = {
    "default": {},  # plain residuals, refinement passes, beam 2, nearest-free
    "normalized": {"residual": "normalized"},
    "suffix": {"collisions": "suffix"},
    "greedy, no refinement": {"beam": 1, "refine": 0},
    "two levels": {"sizes": (16, 16)},
}


@pytest.fixture(autouse=True)
def no_memory_budget(monkeypatch):
    """Every catalog here would be trained in memory as a whole: chunk them all."""
    monkeypatch.setattr(chunked, "IN_MEMORY_BYTES", 0)


@pytest.mark.parametrize("case", CASES)
def test_chunked_train_equals_in_memory(case):
    kw = dict(CASES[case])
    sizes = kw.pop("sizes", (12, 8, 8))
    x = make_vectors(5000, dim=24, seed=4, clusters=40)
    params = engine.TrainParams(sizes, max_points_per_centroid=40, **kw)
    chunk = 700  # not a divisor of 5000: the last chunk is short
    assert not chunked.in_memory(len(x), x.shape[1], params, chunk)
    whole = engine.train(x, params)
    parts = chunked.train(chunked.ArrayRows(x), params, chunk=chunk)
    assert np.array_equal(parts.codes, whole.codes)
    for a, b in zip(parts.codebooks, whole.codebooks, strict=True):
        assert np.array_equal(a, b)
    for figure in ("raw_collision_rate", "moved"):
        assert parts.stats.get(figure) == whole.stats.get(figure)
    if params.residual == "plain":  # summed a chunk at a time: to the last digits
        assert parts.stats["reconstruction_error"] == \
            pytest.approx(whole.stats["reconstruction_error"], rel=1e-9)
    if params.collisions == "nearest-free":
        assert parts.stats["moved"] > 0  # the rows read back from the spill file mattered


@pytest.mark.parametrize("residual", ["plain", "normalized"])
def test_chunked_warm_start_equals_in_memory(residual):
    """A retrain from earlier codebooks, holding on to earlier codes (new rows: -1)."""
    x = make_vectors(5000, dim=24, seed=5, clusters=40)
    cold = engine.TrainParams((12, 8, 8), max_points_per_centroid=40, residual=residual)
    parent = engine.train(x[:4000], cold)
    keep = np.full((5000, 3), -1, dtype=np.int64)
    keep[:4000] = parent.codes
    keep[100:200] = -1  # rows that had no ID
    x = x + 0.05 * make_vectors(5000, dim=24, seed=6)  # the catalog moved a little
    params = engine.TrainParams((12, 8, 8), max_points_per_centroid=40, residual=residual,
                                niter=5, refine=0)
    whole = engine.train(x, params, warm=parent.codebooks, keep=keep, stickiness=0.2)
    parts = chunked.train(chunked.ArrayRows(x), params, warm=parent.codebooks, keep=keep,
                          stickiness=0.2, chunk=700)
    assert np.array_equal(parts.codes, whole.codes)
    for a, b in zip(parts.codebooks, whole.codebooks, strict=True):
        assert np.array_equal(a, b)
    for figure in ("raw_collision_rate", "moved"):
        assert parts.stats.get(figure) == whole.stats.get(figure)
    assert (parts.codes[:4000] == parent.codes).all(axis=1).mean() > 0.3  # some kept


def test_small_or_balanced_catalogs_train_in_memory(monkeypatch):
    params = engine.TrainParams((8, 8), max_points_per_centroid=20)
    assert chunked.in_memory(1000, 16, params, 700)  # under two chunks
    assert chunked.in_memory(300, 16, params, 100)  # the samples would hold every row
    assert not chunked.in_memory(1000, 16, params, 100)
    assert chunked.in_memory(1000, 16, engine.TrainParams((8, 8), max_points_per_centroid=20,
                                                          balance=0.1), 100)
    monkeypatch.setattr(chunked, "IN_MEMORY_BYTES", 64_000)
    assert chunked.in_memory(1000, 16, params, 100)  # 64,000 bytes of vectors
    assert not chunked.in_memory(1001, 16, params, 100)


def test_spill_file_is_removed(tmp_path):
    x = make_vectors(3000, dim=16, seed=1)
    params = engine.TrainParams((8, 8, 8), max_points_per_centroid=40)
    with pytest.raises(FileNotFoundError):  # the residuals do go where they are sent
        chunked.train(chunked.ArrayRows(x), params, chunk=500,
                      spill_dir=str(tmp_path / "missing"))
    r = chunked.train(chunked.ArrayRows(x), params, chunk=500, spill_dir=str(tmp_path))
    assert r.stats["moved"] > 0  # rows were read back from there
    assert list(tmp_path.iterdir()) == []
    # earlier codes are kept in a warm start only (a cold train here would ignore them)
    with pytest.raises(ValueError, match="warm"):
        chunked.train(chunked.ArrayRows(x), params, chunk=500,
                      keep=np.zeros((3000, 3), dtype=np.int64))


def test_registry_train_in_chunks_gives_todays_ids(reg, monkeypatch):
    """The same catalog trained by the registry in chunks of 400 items and all at once (the
    engine in memory, as before chunking): every item's ID is the same."""
    n = 4000
    x = make_vectors(n, dim=16, seed=7, clusters=30)
    keys = make_keys(n)
    reg.add(keys, x)
    reg.remove(keys[100:150])  # gaps in the ids: rows are positions, not ids
    options = dict(levels=3, codebook_size=[8, 8, 4], max_points_per_centroid=40,
                   max_disambiguation=1000)
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 400)
    parts = reg.train(**options, name="chunks")
    monkeypatch.setattr(chunked, "IN_MEMORY_BYTES", 2 << 30)
    whole = reg.train(**options, name="whole")
    assert parts.items == whole.items == n - 50
    assert parts.version.stats["moved"] == whole.version.stats["moved"] > 0
    a = reg.get(keys, version=parts.version.number)
    b = reg.get(keys, version=whole.version.number)
    assert [r.id for r in a] == [r.id for r in b]
    assert sum(r.id is not None for r in a) == n - 50


def test_registry_retrain_in_chunks_gives_todays_ids(reg, monkeypatch):
    n = 3000
    keys = make_keys(n)
    reg.add(keys[:2500], make_vectors(2500, dim=16, seed=8, clusters=30))
    options = dict(levels=3, codebook_size=[8, 8, 4], max_points_per_centroid=40,
                   max_disambiguation=1000)
    parent = reg.train(**options, name="parent").version
    reg.add(keys[2500:], make_vectors(500, dim=16, seed=9, clusters=30))
    reg.remove(keys[:20])
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 300)
    parts = reg.train(from_version="parent", name="chunks", stickiness=0.1)
    monkeypatch.setattr(chunked, "IN_MEMORY_BYTES", 2 << 30)
    whole = reg.train(from_version="parent", name="whole", stickiness=0.1)
    assert parts.version.stats["stability"] == whole.version.stats["stability"]
    assert parts.version.stats["stability"]["same_id"] > 0.3
    a = reg.get(keys, version=parts.version.number)
    b = reg.get(keys, version=whole.version.number)
    assert [r.id for r in a] == [r.id for r in b]
    assert parent.number != parts.version.number


def test_live_vectors_reads_rows_by_position(reg):
    x = make_vectors(300, dim=8, seed=2)
    keys = make_keys(300)
    reg.add(keys, x)
    reg.remove(keys[10:20])
    with reg._tx(write=False) as conn:
        from registry.store import items

        source = scan.LiveVectors(conn, items.single_space(conn))
        assert source.n == 290
        live = np.r_[0:10, 20:300]
        assert np.array_equal(source.rows(5, 15), x[live[5:15]])
        picked = np.array([0, 9, 10, 200, 289])
        assert np.array_equal(source.take(picked), x[live[picked]])
