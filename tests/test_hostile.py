"""Malformed and hostile input across every command, table-driven: each gives a one-line error
and exit 1 with no traceback, and leaves the database logically as it was (a dump of every
table compares equal). Keys with SQL metacharacters round-trip verbatim. Both databases."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from registry import Registry
from registry.cli import cli

from .conftest import dump, make_keys, make_vectors

V16 = [0.1] * 16
LONG = "k" * 100_000


def jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


# name -> (files to write: name -> bytes, arguments ({d} is the folder), part of the message)
CASES = {
    "nan vector": ({"f.jsonl": b'{"key": "n", "v": [NaN' + b", 0.1" * 15 + b"]}\n"},
                   ["add", "{d}/f.jsonl", "--vector", "v"], "NaN or infinity"),
    "inf vector": ({"f.jsonl": jsonl({"key": "n", "v": [*V16[:15], float("inf")]})},
                   ["add", "{d}/f.jsonl", "--vector", "v"], "NaN or infinity"),
    "huge vector value": ({"f.jsonl": jsonl({"key": "n", "v": [*V16[:15], 1e10]})},
                          ["add", "{d}/f.jsonl", "--vector", "v", "--dtype", "float16"],
                          "too large for float16"),
    "wrong dimension": ({"f.jsonl": jsonl({"key": "n", "v": [0.1] * 7})},
                        ["add", "{d}/f.jsonl", "--vector", "v"], "dimension 7"),
    "ragged vectors": ({"f.jsonl": jsonl({"key": "a", "v": V16}, {"key": "b", "v": [1.0] * 3})},
                       ["add", "{d}/f.jsonl", "--vector", "v"], "row 2"),
    "vector of strings": ({"f.jsonl": jsonl({"key": "a", "v": ["x"] * 16})},
                          ["add", "{d}/f.jsonl", "--vector", "v"], "row 1"),
    "empty jsonl": ({"f.jsonl": b""}, ["add", "{d}/f.jsonl", "--vector", "v"], "f.jsonl"),
    "empty csv": ({"f.csv": b""}, ["add", "{d}/f.csv", "--text", "t"], "f.csv"),
    "binary garbage": ({"f.jsonl": bytes(range(256)) * 4},
                       ["add", "{d}/f.jsonl", "--vector", "v"], "f.jsonl"),
    "garbage parquet": ({"f.parquet": b"PAR1" + os.urandom(64)},
                        ["add", "{d}/f.parquet", "--vector", "v"], "f.parquet"),
    "truncated gzip": ({"f.jsonl.gz": gzip.compress(jsonl({"key": "a", "v": V16}))[:20]},
                       ["add", "{d}/f.jsonl.gz", "--vector", "v"], "f.jsonl.gz"),
    "garbage npy": ({"f.npy": b"\x93NUMPY garbage", "k.txt": b"a\n"},
                    ["add", "{d}/f.npy", "--keys", "{d}/k.txt"], "f.npy"),
    "npy keys mismatch": ({"f.npy": b"", "k.txt": b"a\nb\nc\n"},
                          ["add", "{d}/f.npy", "--keys", "{d}/k.txt"], "keys"),
    "duplicate keys": ({"f.jsonl": jsonl({"key": "a", "v": V16}, {"key": "a", "v": V16})},
                       ["add", "{d}/f.jsonl", "--vector", "v"], "duplicate key 'a'"),
    "missing key column": ({"f.jsonl": jsonl({"name": "a", "v": V16})},
                           ["add", "{d}/f.jsonl", "--vector", "v"], "key"),
    "empty key": ({"f.jsonl": jsonl({"key": "", "v": V16})},
                  ["add", "{d}/f.jsonl", "--vector", "v"], "row 1"),
    "NUL in key": ({"f.jsonl": jsonl({"key": "a\x00b", "v": V16})},
                   ["add", "{d}/f.jsonl", "--vector", "v"], "row 1"),
    "oversized key": ({"f.jsonl": jsonl({"key": LONG, "v": V16})},
                      ["add", "{d}/f.jsonl", "--vector", "v"], "row 1"),
    "missing file": ({}, ["add", "{d}/nope.jsonl", "--vector", "v"], "nope.jsonl"),
    "unknown format": ({"f.xml": b"<a/>"}, ["add", "{d}/f.xml", "--vector", "v"], "f.xml"),
    "remove unknown key": ({}, ["remove", "no-such-key"], "no-such-key"),
    "remove NUL key": ({}, ["remove", "a\x00b"], "unknown key"),
    "get quoted key": ({}, ["get", "x' OR '1'='1"], "unknown key"),
    "get percent key": ({}, ["get", "item%"], "unknown key: 'item%'"),
    "get underscore key": ({}, ["get", "item0000_"], "unknown key: 'item0000_'"),
    "get long key": ({}, ["get", LONG], "unknown key"),
    "lookup semicolon": ({}, ["lookup", "1; DROP TABLE assignments"], "malformed"),
    "lookup percent": ({}, ["lookup", "%"], "malformed"),
    "lookup underscore": ({}, ["lookup", "1-_"], "malformed"),
    "lookup negative code": ({}, ["lookup", "--", "-1"], "malformed"),
    "lookup code out of range": ({}, ["lookup", "8-0"], "code 8 at level 1"),
    "lookup last level out of range": ({}, ["lookup", "0-4"], "code 4 at level 2"),
    "lookup huge number": ({}, ["lookup", "0-0-" + "9" * 40], "malformed"),
    "lookup unknown full ID": ({}, ["lookup", "7-3-999"], "unknown ID"),
    "lookup long": ({}, ["lookup", "1-" * 50_000], "malformed"),
    "negative levels": ({}, ["train", "--levels", "-1"], "levels must be"),
    "huge levels": ({}, ["train", "--levels", "100000"], "levels must be"),
    "negative codebook size": ({}, ["train", "-k", "-5"], "codebook size must be"),
    "huge codebook size": ({}, ["train", "-k", "99999999999"], "codebook size must be"),
    "code space overflow": ({}, ["train", "-k", "65536,65536,65536,65536,65536"],
                            "2^62"),
    "unknown version get": ({}, ["get", "item00001", "--version", "42"], "unknown version"),
    "unknown alias": ({}, ["get", "item00001", "--version", "prod"], "unknown version"),
    "quoted version name": ({}, ["train", "--name", "v'; --"], "version name"),
    "alias with semicolon": ({}, ["activate", "1", "--alias", "a;b"], "alias"),
    "freeze unknown": ({}, ["freeze", "99"], "unknown version"),
    "retire active": ({}, ["retire", "1"], "point it at another version first"),
    "rollback nothing": ({}, ["rollback"], "nothing to roll back"),
    "assign retired-or-unknown": ({}, ["assign", "--version", "nope"], "unknown version"),
    "export bad format": ({}, ["export", "-o", "{d}/out.xlsx"], "out.xlsx"),
    "diff unknown": ({}, ["diff", "1", "77"], "unknown version"),
    "drift unknown": ({}, ["drift", "77"], "unknown version"),
    "stats unknown": ({}, ["stats", "77"], "unknown version"),
    "history unknown": ({}, ["history", "--version", "77"], "unknown version"),
    "items unknown version": ({}, ["items", "--new-since", "77"], "unknown version"),
    "items huge limit": ({}, ["items", "--limit", "99999999"], "limit must be"),
}


@pytest.fixture
def ready(migrated_url):
    with Registry(migrated_url) as reg:
        reg.add(make_keys(500), make_vectors(500))
        reg.train(codebook_size=[8, 4], name="first")
        reg.freeze(1)
        reg.activate(1)
    return migrated_url


def invoke(url: str, *args: str):
    return CliRunner().invoke(cli, ["--db", url, *args])


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                      SystemExit), \
        result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output[:500]
    assert "Traceback" not in result.output
    assert message in lines[0], lines[0][:500]


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30
    commands = {args[0] for _, args, _ in CASES.values()}
    assert commands >= {"add", "remove", "get", "lookup", "train", "freeze", "activate",
                        "retire", "rollback", "assign", "export", "diff", "drift", "stats",
                        "history", "items"}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_one_line_and_changes_nothing(ready, tmp_path, name):
    files, args, message = CASES[name]
    for fname, data in files.items():
        (tmp_path / fname).write_bytes(data)
    if name == "npy keys mismatch":
        np.save(tmp_path / "f.npy", make_vectors(2))
    before = dump(ready)
    result = invoke(ready, *[a.format(d=tmp_path) for a in args])
    assert_one_line_error(result, message)
    assert dump(ready) == before


@pytest.mark.parametrize("key", ["it's", 'say "hi"', "a;b", "DROP TABLE items; --", "100%",
                                 "a_b", "%_%", "back\\slash", "tab\there", "ünïcødé ✓",
                                 "k" * 1000, "' OR 1=1 --", "$1", "?", ":name", "%(x)s"])
def test_keys_with_metacharacters_round_trip(migrated_url, tmp_path, key):
    path = tmp_path / "f.jsonl"
    keys = [key, "plain"]
    path.write_bytes(jsonl(*({"key": k, "v": v.tolist()}
                             for k, v in zip(keys, make_vectors(2), strict=True))))
    assert invoke(migrated_url, "add", str(path), "--vector", "v").exit_code == 0
    with Registry(migrated_url) as reg:
        reg.train(codebook_size=[2])
        rec = reg.get([key], 1)[0]
        assert rec.key == key
        assert key in [r.key for r in reg.lookup(rec.id, 1).records]
    out = json.loads(invoke(migrated_url, "get", key, "--version", "1", "--json").output)
    assert out["items"][0]["key"] == key
    assert invoke(migrated_url, "get", key.replace(key[:1], "x", 1) + "?", "--version",
                  "1").exit_code == 1  # no pattern matching: only the exact key


def test_a_database_from_a_newer_schema_is_refused_by_every_command(ready, tmp_path):
    eng = create_engine(ready)
    with eng.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    eng.dispose()
    before = dump(ready)
    for args in (["get", "item00001"], ["lookup", "1"], ["versions"], ["assign"],
                 ["train"], ["verify"], ["init"]):
        assert_one_line_error(invoke(ready, *args), "written by a newer registry")
    assert dump(ready) == before


def test_a_read_only_database(ready, tmp_path):
    if not ready.startswith("sqlite"):
        pytest.skip("a read-only SQLite file; PostgreSQL permissions are the server's")
    path = ready.removeprefix("sqlite:///")
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    before = dump(ready)
    assert invoke(read_only, "get", "item00001").exit_code == 0  # reads still work
    (tmp_path / "f.jsonl").write_bytes(jsonl({"key": "new", "v": V16}))
    for args in (["add", str(tmp_path / "f.jsonl"), "--vector", "v"], ["train"],
                 ["activate", "1", "--alias", "b"], ["remove", "item00001"]):
        assert_one_line_error(invoke(read_only, *args), "readonly database")
    assert dump(ready) == before


def test_a_database_in_a_read_only_folder_or_nowhere(tmp_path):
    missing = f"sqlite:///{tmp_path / 'nope' / 'deeper' / 'r.db'}"
    # both say what is missing: init would fail to make the file too, so neither sends the
    # user there
    for command in ("versions", "init"):
        assert_one_line_error(invoke(missing, command), "no folder ")
        assert "registry init" not in invoke(missing, command).output
    assert_one_line_error(invoke("postgresql+psycopg://nobody@127.0.0.1:1/none", "versions"),
                          "database")
    assert_one_line_error(invoke("mysql://x", "versions"), "mysql")
