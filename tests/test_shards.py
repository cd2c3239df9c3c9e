"""`registry add` of a directory or glob of Parquet shards: checked whole first, then read a
record batch at a time; errors name the shard and row; resumable."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from registry import shards

from .conftest import dump, make_vectors
from .test_crashes import killed_at, rerun

DIM = 8


def write_shards(folder, sizes, *, seed=0, fixed=True, row_group=40):
    """Shards part-00000.parquet... of ``sizes`` rows (key, vector, section); returns the
    keys and vectors in order. Spark's _SUCCESS marker beside them."""
    folder.mkdir(exist_ok=True)
    vectors = make_vectors(sum(sizes), dim=DIM, seed=seed)
    keys = [f"sku-{i}" for i in range(sum(sizes))]
    at = 0
    for s, n in enumerate(sizes):
        x = vectors[at:at + n]
        col = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM) if fixed \
            else pa.array(x.tolist(), type=pa.list_(pa.float64()))
        table = pa.table({"key": keys[at:at + n], "vec": col,
                          "section": [f"s{i % 3}" for i in range(at, at + n)]})
        pq.write_table(table, folder / f"part-{s:05d}.parquet", row_group_size=row_group)
        at += n
    (folder / "_SUCCESS").write_text("")
    return keys, vectors


@pytest.mark.parametrize("fixed", [True, False], ids=["fixed-size lists", "lists of doubles"])
def test_add_a_directory_of_shards(reg, run, tmp_path, monkeypatch, fixed):
    monkeypatch.setattr(shards, "BATCH_ROWS", 50)  # several batches per shard
    keys, vectors = write_shards(tmp_path / "out", [120, 7, 95], fixed=fixed)
    out = json.loads(run("add", str(tmp_path / "out"), "--vector", "vec", "--json").output)
    assert (out["rows"], out["added"], out["dim"]) == (222, 222, DIM)
    assert np.array_equal(reg.embeddings(keys), vectors)
    with reg._tx(write=False) as conn:
        from registry.store import items

        stored = items.existing(conn, ["sku-130"])
    assert stored["sku-130"].meta == {"section": "s1"}
    # again: every row unchanged, nothing written
    again = json.loads(run("add", str(tmp_path / "out"), "--vector", "vec", "--json").output)
    assert (again["unchanged"], again["added"], again["embedded"]) == (222, 0, 0)


def test_a_glob_picks_its_shards(reg, run, tmp_path):
    write_shards(tmp_path / "out", [30, 30, 30])
    r = run("add", str(tmp_path / "out" / "part-0000[01].parquet"), "--vector", "vec",
            "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["added"] == 60
    assert reg.items().counts["live"] == 60
    r = run("add", str(tmp_path / "out" / "nothing-*.parquet"), "--vector", "vec")
    assert r.exit_code == 1
    assert "no Parquet files" in r.output and "nothing-*.parquet" in r.output


def test_a_bad_row_in_a_later_shard_stores_nothing(reg, run, tmp_path, migrated_url):
    write_shards(tmp_path / "out", [50, 50])
    bad = pa.table({"key": ["late-1", "late-2"],
                    "vec": pa.array([[0.1] * DIM, [float("nan")] * DIM],
                                    type=pa.list_(pa.float32())),
                    "section": ["x", "y"]})
    pq.write_table(bad, tmp_path / "out" / "part-00002.parquet")
    before = dump(migrated_url)
    r = run("add", str(tmp_path / "out"), "--vector", "vec", "--json")
    assert r.exit_code == 1
    err = json.loads(r.output)
    assert "part-00002.parquet" in err["detail"] and "row 2" in err["detail"]
    assert "NaN" in err["detail"]
    assert dump(migrated_url) == before


def test_a_key_in_two_shards_is_refused(reg, run, tmp_path, migrated_url):
    write_shards(tmp_path / "out", [40, 40])
    again = pa.table({"key": ["new-0", "sku-17"],
                      "vec": pa.array([[0.5] * DIM] * 2, type=pa.list_(pa.float32())),
                      "section": ["x", "y"]})
    pq.write_table(again, tmp_path / "out" / "part-00002.parquet")
    before = dump(migrated_url)
    r = run("add", str(tmp_path / "out"), "--vector", "vec")
    assert r.exit_code == 1
    assert "duplicate key 'sku-17'" in r.output
    assert "part-00000.parquet row 18" in r.output and "part-00002.parquet" in r.output
    assert dump(migrated_url) == before


@pytest.mark.parametrize("table, message", [
    ({"key": ["a", "b"], "vec": [[1.0] * DIM, [1.0] * (DIM - 1)]},
     "vector has 7 numbers, earlier rows have 8"),
    ({"key": ["a", "b"], "vec": [[1.0] * DIM, None]}, "non-empty list of numbers"),
    ({"key": ["a", ""], "vec": [[1.0] * DIM] * 2}, "empty key"),
    ({"id": ["a", "b"], "vec": [[1.0] * DIM] * 2}, "no column 'key'"),
])
def test_shard_errors_name_the_shard_and_row(reg, run, tmp_path, table, message):
    (tmp_path / "out").mkdir()
    pq.write_table(pa.table(table), tmp_path / "out" / "part-0.parquet")
    r = run("add", str(tmp_path / "out"), "--vector", "vec")
    assert r.exit_code == 1
    assert message in r.output and "part-0.parquet" in r.output
    assert "Traceback" not in r.output
    assert reg.items().counts["live"] == 0


def test_options_that_do_not_apply_to_shards(run, tmp_path):
    write_shards(tmp_path / "out", [10])
    r = run("add", str(tmp_path / "out"), "--vector", "vec", "--keys", str(tmp_path / "k"))
    assert r.exit_code != 0 and "--keys" in r.output
    r = run("add", str(tmp_path / "out"), "--vector", "vec", "--reembed")
    assert r.exit_code != 0 and "--reembed" in r.output
    (tmp_path / "empty").mkdir()
    r = run("add", str(tmp_path / "empty"), "--vector", "vec")
    assert r.exit_code == 1 and "no Parquet files" in r.output


def test_a_killed_shard_add_resumes(reg, migrated_url, tmp_path):
    write_shards(tmp_path / "out", [150, 150])
    killed_at(migrated_url, "add-committed", tmp_path, "add", str(tmp_path / "out"),
              "--vector", "vec", "--commit-every", "100")
    assert reg.items().counts["live"] == 100
    out = rerun(migrated_url, "add", str(tmp_path / "out"), "--vector", "vec",
                "--commit-every", "100")
    assert (out["added"], out["unchanged"]) == (200, 100)
    assert reg.items().counts["live"] == 300
