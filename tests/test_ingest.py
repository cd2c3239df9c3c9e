"""Adding items from files: every format, and every bad file a one-line error that stores
nothing."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from registry import InputError
from registry.ingest import read_file, read_npy

from .conftest import dump, make_keys, make_vectors

VECS = make_vectors(5, dim=4, seed=1)
KEYS = make_keys(5)


def _jsonl(path, rows, gz=False):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _rows():
    return [{"key": k, "vec": v.tolist(), "colour": "red", "n": i}
            for i, (k, v) in enumerate(zip(KEYS, VECS, strict=True))]


def _check(rows):
    assert rows.keys == KEYS
    np.testing.assert_allclose(rows.vectors, VECS, rtol=1e-6)
    assert rows.vectors.dtype == np.float32


def test_jsonl_plain_and_gzipped_keep_other_columns_as_metadata(tmp_path):
    for gz in (False, True):
        rows = read_file(_jsonl(tmp_path / f"a{gz}.jsonl{'.gz' * gz}", _rows(), gz),
                         "key", vector="vec")
        _check(rows)
        assert rows.metas[2] == {"colour": "red", "n": 2}


def test_csv_with_json_or_space_separated_vectors(tmp_path):
    lines = ["key,vec,colour"] + [f'{k},"{json.dumps(v.tolist())}",red'
                                  for k, v in zip(KEYS[:3], VECS[:3], strict=True)]
    lines += [f"{k},{' '.join(map(repr, v.tolist()))},blue"
              for k, v in zip(KEYS[3:], VECS[3:], strict=True)]
    path = tmp_path / "a.csv"
    path.write_text("\n".join(lines) + "\n")
    rows = read_file(path, "key", vector="vec")
    _check(rows)
    assert rows.metas[4] == {"colour": "blue"}


def test_parquet_list_column(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": KEYS, "emb": [v.tolist() for v in VECS],
                             "section": ["x"] * 5}), path)
    rows = read_file(path, "id", vector="emb")
    _check(rows)
    assert rows.metas[0] == {"section": "x"}


def test_npy_with_keys_file(tmp_path):
    np.save(tmp_path / "v.npy", VECS.astype(np.float16))
    (tmp_path / "k.txt").write_text("\n".join(KEYS) + "\n")
    rows = read_npy(tmp_path / "v.npy", tmp_path / "k.txt")
    assert rows.keys == KEYS and rows.vectors.dtype == np.float32
    np.testing.assert_allclose(rows.vectors, VECS, atol=1e-2)


def test_adding_the_same_file_twice_changes_nothing(run, tmp_path, migrated_url):
    path = _jsonl(tmp_path / "a.jsonl", _rows())
    first = run("add", str(path), "--vector", "vec", "--json")
    assert json.loads(first.output)["added"] == 5
    before = dump(migrated_url)
    again = run("add", str(path), "--vector", "vec", "--json")
    assert json.loads(again.output)["unchanged"] == 5
    assert dump(migrated_url) == before


def _bad_files(tmp_path):
    """(file, extra CLI args, expected message) for every kind of bad input."""
    good = _rows()
    cases = []

    def jsonl(name, rows, *args, msg):
        cases.append((_jsonl(tmp_path / name, rows), args, msg))

    jsonl("nokey.jsonl", [{"vec": [1, 2, 3, 4]}], msg="nokey.jsonl row 1: no column 'key'")
    jsonl("novec.jsonl", [{"key": "a"}], msg="row 1: no column 'vec'")
    jsonl("empty_key.jsonl", [good[0], {"key": " ", "vec": [1, 2, 3, 4]}],
          msg="row 2: empty key")
    jsonl("dup.jsonl", [good[0], good[1], good[0]],
          msg="row 3: duplicate key 'item00000' (first at row 1)")
    jsonl("nan.jsonl", [good[0], {"key": "z", "vec": [1, float("nan"), 3, 4]}],
          msg="row 2: vector contains NaN")
    jsonl("inf.jsonl", [{"key": "z", "vec": [1, 2, 3, 1e39]}], msg="too large for float32")
    jsonl("dim.jsonl", [good[0], {"key": "z", "vec": [1, 2, 3]}],
          msg="row 2: vector has 3 numbers, earlier rows have 4")
    jsonl("text.jsonl", [{"key": "z", "vec": ["a", "b"]}], msg="list of numbers")
    jsonl("objkey.jsonl", [{"key": {"a": 1}, "vec": [1, 2, 3, 4]}], msg="key must be")
    jsonl("longkey.jsonl", [{"key": "k" * 5000, "vec": [1, 2, 3, 4]}], msg="the limit is 1000")
    jsonl("nul.jsonl", [{"key": "a\x00b", "vec": [1, 2, 3, 4]}], msg="NUL")
    jsonl("otherdim.jsonl", [{"key": "z", "vec": [1, 2, 3, 4, 5, 6]}],
          msg="dimension 6, but the registry's items have dimension 4")
    (tmp_path / "notjson.jsonl").write_text(json.dumps(good[0]) + "\n{oops\n")
    cases.append((tmp_path / "notjson.jsonl", (), "notjson.jsonl row 2: not valid JSON"))
    (tmp_path / "array.jsonl").write_text("[1, 2]\n")
    cases.append((tmp_path / "array.jsonl", (), "row 1: each line must be a JSON object"))
    (tmp_path / "latin1.jsonl").write_bytes(b'{"key": "a", "vec": [1,2,3,4]}\n'
                                            b'{"key": "caf\xe9", "vec": [1,2,3,4]}\n')
    cases.append((tmp_path / "latin1.jsonl", (), "row 2: not valid UTF-8"))
    (tmp_path / "blank.jsonl").write_text("\n\n")
    cases.append((tmp_path / "blank.jsonl", (), "blank.jsonl: no rows"))
    (tmp_path / "garbage.jsonl.gz").write_bytes(b"\x00\x01not gzip")
    cases.append((tmp_path / "garbage.jsonl.gz", (), "not a valid gzip file"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nonsense")
    cases.append((tmp_path / "bad.parquet", (), "not a readable Parquet file"))
    (tmp_path / "a.txt").write_text("hello")
    cases.append((tmp_path / "a.txt", (), "unknown file type"))
    cases.append((tmp_path / "missing.jsonl", (), "missing.jsonl: no such file"))
    (tmp_path / "ragged.csv").write_text('key,vec\na,"[1,2,3,4]",extra\n')
    cases.append((tmp_path / "ragged.csv", (), "row 2: more fields than the header"))
    np.save(tmp_path / "m.npy", VECS)
    (tmp_path / "short.txt").write_text("a\nb\n")
    cases.append((tmp_path / "m.npy", ("--keys", str(tmp_path / "short.txt")),
                  "short.txt: 2 keys for 5 vectors"))
    cases.append((tmp_path / "m.npy", (), "a .npy matrix needs --keys"))
    np.save(tmp_path / "s.npy", np.array([["a", "b"]] * 2))
    cases.append((tmp_path / "s.npy", ("--keys", str(tmp_path / "short.txt")),
                  "vectors must be real numbers"))
    (tmp_path / "obj.npy").write_bytes(b"\x93NUMPY garbage")
    cases.append((tmp_path / "obj.npy", ("--keys", str(tmp_path / "short.txt")),
                  "not a readable .npy array"))
    np.savez(tmp_path / "arrays.npz", a=VECS)
    cases.append((tmp_path / "arrays.npz", ("--keys", str(tmp_path / "short.txt")),
                  "arrays.npz: a NumPy .npz archive holds several arrays: save the one matrix "
                  "with numpy.save as .npy"))
    cases.append((tmp_path / "arrays.npz", (), "a NumPy .npz archive holds several arrays"))
    (tmp_path / "archive.npy").write_bytes((tmp_path / "arrays.npz").read_bytes())
    cases.append((tmp_path / "archive.npy", ("--keys", str(tmp_path / "short.txt")),
                  "not a .npy array but an archive of several"))
    cases.append((tmp_path / "ok.jsonl", ("--keys", str(tmp_path / "short.txt")),
                  "--keys goes with a .npy matrix"))
    return cases


def test_bad_files_give_one_line_errors_and_store_nothing(run, tmp_path, migrated_url):
    assert run("add", str(_jsonl(tmp_path / "ok.jsonl", _rows())), "--vector", "vec"
               ).exit_code == 0
    before = dump(migrated_url)
    for path, args, message in _bad_files(tmp_path):
        extra = args if args and args[0] == "--keys" else ("--vector", "vec", *args)
        if path.suffix == ".npy" and not args:
            extra = ()
        result = run("add", str(path), *extra)
        assert result.exit_code == 1, (path, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (path, result.output)
        assert message in lines[0], (path, lines[0])
        assert "Traceback" not in result.output
    assert dump(migrated_url) == before


def test_api_checks_keys_and_vectors(reg):
    with pytest.raises(InputError, match="duplicate key 'a'"):
        reg.add(["a", "b", "a"], make_vectors(3))
    with pytest.raises(InputError, match="3 keys but vectors of shape"):
        reg.add(["a", "b", "c"], make_vectors(2))
    with pytest.raises(InputError, match="row 2: vector contains NaN"):
        reg.add(["a", "b"], np.array([[1.0, 2.0], [np.nan, 1.0]]))


def test_other_columns_are_stored_as_json_metadata(reg, tmp_path, migrated_url):
    from sqlalchemy import create_engine, text

    reg.add_file(_jsonl(tmp_path / "a.jsonl", _rows()), vector="vec")
    reg.add(["plain"], make_vectors(1, dim=4))
    eng = create_engine(migrated_url)
    with eng.connect() as conn:
        rows = dict(conn.execute(text("SELECT key, meta FROM items")).all())
        nulls = conn.execute(text("SELECT count(*) FROM items WHERE meta IS NULL")).scalar()
    eng.dispose()
    meta = rows["item00003"]
    meta = json.loads(meta) if isinstance(meta, str) else meta
    assert meta == {"colour": "red", "n": 3}
    assert nulls == 1 and rows["plain"] is None  # no metadata is SQL NULL, not JSON null


def test_float16_storage_refuses_numbers_it_cannot_hold(reg, migrated_url):
    before = dump(migrated_url)
    big = np.ones((3, 4), dtype=np.float32)
    big[1, 2] = 1e6
    with pytest.raises(InputError, match="row 2: vector holds numbers too large for float16"):
        reg.add(["a", "b", "c"], big, dtype="float16")
    assert dump(migrated_url) == before
