"""A version's token vocabulary is fixed when it is trained: assignments never need a token
outside it, and one that would is refused."""

from __future__ import annotations

import json

import pytest

from registry import StateError
from registry.errors import InputError
from registry.ids import default_max_disambiguation

from .conftest import dump, make_keys, make_vectors


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


def test_an_assign_that_would_need_a_token_outside_the_vocabulary_is_refused(
        reg, run, migrated_url, tmp_path):
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
    reg.add(make_keys(300, start=600), make_vectors(300, seed=2))
    before = dump(migrated_url)
    with pytest.raises(StateError, match=f"above version {v.number} \\(tight\\)'s limit of "
                                         f"{largest}"):
        reg.assign("tight")
    assert dump(migrated_url) == before
    result = run("assign", "-v", "tight")
    assert result.exit_code == 1 and "Train a version with a larger code space" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert _vocab(run, "tight", tmp_path / "again.txt") == vocab
    bad = run("train", "--max-disambiguation", "-1")
    assert bad.exit_code == 1 and "--max-disambiguation" in bad.output
