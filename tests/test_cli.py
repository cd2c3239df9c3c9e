"""The command line: help everywhere, --json everywhere, one-line errors that change nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from registry.cli import cli

from .conftest import dump, make_keys, make_vectors


def test_every_command_and_option_has_help():
    runner = CliRunner()
    assert cli.help
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 20, name
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.name}"
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert command.help.split("\n")[0][:30] in " ".join(result.output.split())


def _write_catalog(tmp_path, n=500, start=0, seed=0, name="items"):
    np.save(tmp_path / f"{name}.npy", make_vectors(n, seed=seed))
    (tmp_path / f"{name}.txt").write_text("\n".join(make_keys(n, start=start)) + "\n")
    return str(tmp_path / f"{name}.npy"), str(tmp_path / f"{name}.txt")


def test_whole_flow_with_json_on_every_command(run, tmp_path):
    vecs, keys = _write_catalog(tmp_path)
    out = {}
    for step in (["add", vecs, "--keys", keys],
                 ["train", "--levels", "3", "--codebook-size", "8,4,4", "--name", "first",
                  "--seed", "2"],
                 ["freeze", "first"], ["activate", "first"]):
        result = run(*step, "--json")
        assert result.exit_code == 0, result.output
        out[step[0]] = json.loads(result.output)
    assert out["add"]["added"] == 500
    assert out["train"]["items"] == 500 and out["train"]["codebook_sizes"] == [8, 4, 4]
    assert out["freeze"]["version"]["state"] == "frozen"
    assert out["activate"]["version"]["aliases"] == ["active"]
    new_vecs, new_keys = _write_catalog(tmp_path, n=40, start=500, seed=1, name="new")
    assert run("add", new_vecs, "--keys", new_keys).exit_code == 0
    assign = json.loads(run("assign", "--json").output)
    assert assign["assigned"] == 40
    got = json.loads(run("get", "item00000", "item00539", "--json").output)["items"]
    assert [g["key"] for g in got] == ["item00000", "item00539"]
    prefix = "-".join(map(str, got[0]["codes"][:2]))
    found = json.loads(run("lookup", prefix, "--limit", "500", "--json").output)
    assert found["kind"] == "prefix"
    assert "item00000" in [i["key"] for i in found["items"]]
    assert all(i["id"].startswith(prefix + "-") for i in found["items"])
    exact = json.loads(run("lookup", got[1]["id"], "--json").output)
    assert [i["key"] for i in exact["items"]] == ["item00539"]
    listed = json.loads(run("versions", "--json").output)
    assert [(v["version"], v["name"], v["state"], v["items"]) for v in listed] == \
        [(1, "first", "frozen", 540)]
    init = json.loads(run("init", "--json").output)
    assert init["schema"] == init["schema_before"]


def test_text_output(run, tmp_path):
    vecs, keys = _write_catalog(tmp_path)
    assert "500 added" in run("add", vecs, "--keys", keys).output
    trained = run("train", "-k", "8,4").output
    assert "trained version 1 (draft): 500 items, 2 levels, codebook sizes 8x4" in trained
    assert "collision rate" in trained
    run("freeze", "1")
    assert "active -> version 1" in run("activate", "1").output
    line = run("get", "item00003").output.strip()
    key, id_ = line.split("\t")
    assert key == "item00003" and len(id_.split("-")) == 3
    assert f"{id_}\titem00003" in run("lookup", id_.rsplit("-", 1)[0]).output
    table = run("versions").output.splitlines()
    assert table[0].split()[:4] == ["version", "name", "state", "aliases"]
    assert table[1].split()[:4] == ["1", "-", "frozen", "active"]


@pytest.fixture
def ready(run, tmp_path):
    vecs, keys = _write_catalog(tmp_path)
    for step in (["add", vecs, "--keys", keys], ["train", "-k", "8,4", "--name", "first"],
                 ["freeze", "1"], ["activate", "1"]):
        done = run(*step)
        assert done.exit_code == 0, done.output
    return tmp_path


USER_ERRORS = [
    (["get", "item00001", "--version", "9"], "unknown version: '9'"),
    (["get", "item00001", "--version", "nope"], "unknown version: 'nope'"),
    (["get", "no-such-key"], "unknown key: 'no-such-key'"),
    (["get", "it'; DROP TABLE items; --"], "unknown key"),
    (["lookup", "1-x"], "malformed ID or prefix '1-x'"),
    (["lookup", "1%"], "malformed"),
    (["lookup", "99"], "code 99 at level 1"),
    (["lookup", "1-2-3-4"], "at most 3 numbers"),
    (["lookup", "1", "--limit", "0"], "limit must be"),
    (["train", "--name", "first"], "version 1 (first) already exists and is frozen"),
    (["train", "-k", "4096"], "at least 4096 items for 4096 codes, but there are only 500"),
    (["train", "--levels", "-2"], "levels must be"),
    (["train", "--levels", "1000"], "levels must be between 1 and 8"),
    (["train", "-k", "0"], "codebook size must be between 2"),
    (["train", "--seed", "-1"], "seed must be"),
    (["train", "--residual", "normalized", "--refine", "2"], "need plain residuals"),
    (["train", "--refine", "-1"], "refinement passes must be between 0 and 100"),
    (["train", "--from", "1", "--refine", "2"],
     "--refine: does not apply to a warm start (a retrain from another version)"),
    (["freeze", "7"], "unknown version: '7'"),
    (["activate", "nope"], "unknown version"),
    (["assign", "--batch-size", "0"], "batch size must be"),
]


@pytest.mark.parametrize("args, message", USER_ERRORS)
def test_user_errors_are_one_line_and_change_nothing(run, ready, migrated_url, args, message):
    before = dump(migrated_url)
    result = run(*args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0]
    assert dump(migrated_url) == before
    # under --json, the error is JSON too: one object on stderr, and nothing on stdout but
    # what get found (none of the keys)
    result = run(*args, "--json")
    assert result.exit_code == 1
    assert result.stdout == "" or json.loads(result.stdout)["items"] == []
    error = json.loads(result.stderr)
    assert set(error) == {"error", "detail"} and message in error["detail"]
    assert error["error"] in ("input", "not_found", "state", "database")
    assert dump(migrated_url) == before


def test_usage_errors_under_json_are_json(run, ready):
    for args in (["get", "--json", "--bogus"], ["lookup", "--json"],
                 ["train", "--residual", "odd", "--json"]):
        result = run(*args)
        assert result.exit_code == 2 and result.stdout == ""
        error = json.loads(result.stderr)
        assert error["error"] == "usage" and error["detail"]
    plain = run("get", "--bogus")
    assert plain.exit_code == 2 and "No such option" in plain.stderr


def test_wrong_dimension_nan_and_duplicates_in_files(run, ready, migrated_url):
    path = ready / "bad.jsonl"
    before = dump(migrated_url)
    for rows, message in [
        ([{"key": "new", "v": [0.1] * 3}], "dimension 3, but the registry's items have "
                                           "dimension 16"),
        ([{"key": "new", "v": [0.1] * 15 + [float("inf")]}], "row 1: vector contains NaN or "
                                                             "infinity"),
        ([{"key": "a", "v": [0.1] * 16}, {"key": "a", "v": [0.2] * 16}],
         "row 2: duplicate key 'a' (first at row 1)"),
    ]:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        result = run("add", str(path), "--vector", "v")
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert dump(migrated_url) == before


def test_missing_database_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path}/none.db", "versions"])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: no registry database at {tmp_path}/none.db: "
                                     "run `registry init` first")
    assert not (tmp_path / "none.db").exists()


def test_db_defaults_to_environment_variable(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("REGISTRY_DB", url)
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 0 and (tmp_path / "env.db").exists()
    monkeypatch.delenv("REGISTRY_DB")
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["init"]).exit_code == 0
    assert (tmp_path / "registry.db").exists()


@pytest.mark.parametrize("args, message", [
    (["get", "item00001", "--version", "²"], "unknown version"),
    (["get", "item00001", "--version", "a\x00b"], "unknown version"),
    (["get", "a\x00b"], "unknown key"),
    (["lookup", "1\x00"], "malformed"),
])
def test_odd_characters_are_plain_errors(run, ready, args, message):
    result = run(*args)
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_database_errors_are_one_line(run, ready, migrated_url):
    from .conftest import fail_inserts

    vecs, keys = _write_catalog(ready, n=3, start=900, seed=3, name="late")
    run("add", vecs, "--keys", keys)
    fail_inserts(migrated_url, "assignments", "NEW.item_id = 501")
    result = run("assign")
    assert result.exit_code == 1
    assert result.output.startswith("Error: database error: ") and "boom" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_small_hints(run, ready, tmp_path):
    """A mistyped version name gets a suggestion; a bare file name as --db gets the SQLite
    URL it meant; one version is not "1 versions"."""
    typo = run("get", "item00001", "--version", "frist")
    assert typo.exit_code == 1 and "did you mean 'first'?" in typo.stderr
    far = run("get", "item00001", "--version", "zzzz")
    assert "see `registry versions`" in far.stderr and "did you mean" not in far.stderr
    bare = run("versions", url="r1.db")
    assert bare.exit_code == 1
    assert "not a database URL: 'r1.db' (for a SQLite file, sqlite:///r1.db)" in bare.stderr
    assert run("verify").output.startswith("ok: 1 version, 500 IDs;")


def test_train_options_are_the_train_requests_fields():
    """TrainRequest is the one list of train's fields: the command's options are exactly
    they (and --json), so a field added there without an option, or the reverse, fails."""
    import dataclasses

    from registry.training import TrainRequest

    options = {p.name for p in cli.commands["train"].params} - {"as_json"}
    assert options == {f.name for f in dataclasses.fields(TrainRequest)}
