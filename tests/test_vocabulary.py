"""A version's token vocabulary is fixed when it is trained: assignments never need a token
outside it, and one that would is refused."""

from __future__ import annotations

import json

import pytest

from registry.errors import InputError
from registry.ids import default_max_disambiguation

from .conftest import make_keys, make_vectors


def _vocab(run, version, path) -> list[str]:
    result = run("export", str(version), "-o", str(path.with_suffix(".csv")), "--vocab",
                 str(path), "--json")
    assert result.exit_code == 0, result.output
    return path.read_text().split()


def test_a_frozen_versions_vocabulary_never_grows(reg, run, tmp_path):
    reg.add(make_keys(600), make_vectors(600))
    v = reg.train(codebook_size=[4, 4], collisions="suffix", name="small").version
    largest = v.largest_disambiguation
    assert largest > 10  # 600 items on 16 tuples: crowded
    assert v.max_disambiguation == default_max_disambiguation((4, 4), largest) == 2 * largest + 1
    reg.freeze("small")
    before = _vocab(run, "small", tmp_path / "before.txt")
    assert len(before) == 4 + 4 + v.max_disambiguation + 1 == v.vocabulary_size
    assert before[-1] == f"<c_{v.max_disambiguation}>"
    # more items on the same tuples: numbers above the train's largest, within the limit
    reg.add(make_keys(150, start=600), make_vectors(150, seed=1))
    assert reg.assign("small").assigned == 150
    issued = reg.export("small", tmp_path / "ids.csv")
    assert issued.rows == 750
    after = _vocab(run, "small", tmp_path / "after.txt")
    assert after == before
    listed = json.loads(run("versions", "--json").output)[0]
    assert (listed["max_disambiguation"], listed["vocabulary_tokens"]) == (
        v.max_disambiguation, len(before))
    assert "max d" in run("versions").output
    stats = json.loads(run("stats", "small", "--sample", "50", "--json").output)
    assert stats["max_disambiguation"] == v.max_disambiguation
    assert largest < stats["largest_disambiguation"] <= v.max_disambiguation


def test_items_that_would_need_a_token_outside_the_vocabulary_get_no_id(
        reg, run, migrated_url, tmp_path):
    """An ID a version cannot spell is never issued: the items whose tuples are full are
    left without one (and named), the others get theirs; the vocabulary stays."""
    reg.add(make_keys(600), make_vectors(600))
    largest = reg.train(codebook_size=[4, 4], collisions="suffix").version.largest_disambiguation
    # a limit below what training needs is refused, and nothing is written
    with pytest.raises(InputError, match=f"up to {largest}, above the limit of {largest - 1}"):
        reg.train(codebook_size=[4, 4], collisions="suffix", name="tight",
                  max_disambiguation=largest - 1)
    assert [s.version.number for s in reg.versions()] == [1]
    v = reg.train(codebook_size=[4, 4], collisions="suffix", name="tight",
                  max_disambiguation=largest).version
    assert v.max_disambiguation == largest
    reg.freeze("tight")
    vocab = _vocab(run, "tight", tmp_path / "vocab.txt")
    new = make_keys(300, start=600)
    reg.add(new, make_vectors(300, seed=2))
    r = reg.assign("tight")
    assert r.full > 0 and r.assigned + r.full == 300 and r.assigned > 0
    got = reg.get(new, "tight")
    assert len(got) == r.assigned and len(got.unassigned) == r.full
    assert max(x.disambiguation for x in got) <= largest
    # the command says so in one line after its result, and exits 1
    result = run("assign", "-v", "tight", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["full"] == r.full
    error = json.loads(result.stderr)
    assert error["error"] == "state" and f"{r.full} new items got no ID" in error["detail"]
    assert "Train a version with a larger code space" in error["detail"]
    assert _vocab(run, "tight", tmp_path / "again.txt") == vocab
    assert reg.verify().ok
    bad = run("train", "--max-disambiguation", "-1")
    assert bad.exit_code == 1 and "--max-disambiguation" in bad.output


def test_exports_carry_their_version(trained, tmp_path):
    """The token style keeps the canonical ID; a Parquet file says in its metadata, a CSV or
    JSONL file in PATH.json, which version and seal its IDs come from."""
    import pyarrow.parquet as pq

    import registry

    reg, v = trained
    out = reg.export(1, tmp_path / "ids.parquet", style="tokens")
    table = pq.read_table(out.path)
    assert {"key", "id", "tokens"} <= set(table.column_names)
    row = table.slice(0, 1).to_pylist()[0]
    assert reg.lookup(row["id"]).records[0].key == row["key"]
    assert reg.lookup(row["tokens"]).records[0].key == row["key"]
    about = json.loads(table.schema.metadata[b"registry"])
    assert (about["version"], about["name"], about["codebook_sizes"], about["registry"]) == \
        (1, "v1", [8, 4, 4], registry.__version__)
    assert about["seal"]["ids"] == 600 and about["rows"] == 600
    assert len(about["seal"]["codebooks_sha256"]) == 64
    assert about["vocabulary_tokens"] == v.vocabulary_size
    reg.export(1, tmp_path / "ids.csv")
    beside = json.loads((tmp_path / "ids.csv.json").read_text())
    assert {k: beside[k] for k in ("version", "seal", "style")} == \
        {"version": 1, "seal": about["seal"], "style": "ids"}
