"""Training versions: every live item gets a unique ID, codebooks are stored checksummed, and a
failing or refused train leaves the database exactly as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest

from registry import InputError, StateError, defaults, engine
from registry.ids import (
    CodeSpace,
    default_max_disambiguation,
    disambiguate,
    disambiguate_keeping,
)

from .conftest import dump, fail_inserts, make_keys, make_vectors, partitions


def _codes(reg, keys, version):
    return np.array([r.codes for r in reg.get(keys, version)])


def test_train_gives_every_item_a_unique_id(reg, catalog):
    keys, vectors = catalog
    reg.add(keys, vectors)
    summary = reg.train(codebook_size=[8, 4, 4], seed=3, collisions="suffix")
    v = summary.version
    assert (v.number, v.state, summary.items) == (1, "draft", 600)
    records = reg.get(keys, 1)
    ids = [r.id for r in records]
    assert len(set(ids)) == 600
    assert all(len(r.codes) == 3 and r.id.count("-") == 3 for r in records)
    # the stored IDs are what the engine gives for the stored codebooks
    assert v.beam == defaults.BEAM
    expected = engine.encode(vectors, reg.codebooks(1), beam=v.beam)
    np.testing.assert_array_equal(_codes(reg, keys, 1), expected)
    packed = CodeSpace((8, 4, 4)).pack(expected)
    assert summary.raw_collision_rate == pytest.approx(1 - len(np.unique(packed)) / 600)
    # disambiguation numbers count 0, 1, 2, ... within each code tuple
    by_code: dict[tuple, list[int]] = {}
    for r in records:
        by_code.setdefault(tuple(r.codes), []).append(r.disambiguation)
    assert all(sorted(d) == list(range(len(d))) for d in by_code.values())
    assert v.largest_disambiguation == max(max(d) for d in by_code.values())


def test_versions_are_numbered_and_same_seed_gives_same_ids(reg, catalog):
    keys, vectors = catalog
    reg.add(keys, vectors)
    a = reg.train(codebook_size=[8, 4], seed=11, name="a").version
    b = reg.train(codebook_size=[8, 4], seed=11, name="b").version
    c = reg.train(levels=2, codebook_size=8, seed=12).version
    assert (a.number, b.number, c.number) == (1, 2, 3)
    assert [r.id for r in reg.get(keys, "a")] == [r.id for r in reg.get(keys, "b")]
    assert c.params["codebook_sizes"] == [8, 8]
    listed = reg.versions()
    assert [(s.version.number, s.version.name, s.items) for s in listed] == \
        [(1, "a", 600), (2, "b", 600), (3, None, 600)]


def test_train_params_are_kept_with_the_version(reg, catalog):
    reg.add(*catalog)
    v = reg.train(codebook_size=[16, 4], seed=9, residual="normalized", niter=7,
                  max_points_per_centroid=64).version
    assert v.params == {"codebook_sizes": [16, 4], "seed": 9, "residual": "normalized",
                        "niter": 7, "max_points_per_centroid": 64,
                        "collisions": "nearest-free", "balance": None, "refine": 0,
                        "beam": 1, "max_disambiguation": default_max_disambiguation(
                            (16, 4), v.largest_disambiguation), "allocation_block": 8192}
    assert v.dim == 16 and "reconstruction_error" not in v.stats


def test_codebooks_round_trip(trained):
    # tampering with them is in test_verify.py
    reg, v = trained
    books = reg.codebooks(v.number)
    assert [b.shape for b in books] == [(8, 16), (4, 16), (4, 16)]
    assert all(b.dtype == np.float32 for b in books)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"codebook_size": 1024}, InputError, "at least 1024 items"),
    ({"levels": 2, "codebook_size": [8, 4, 4]}, InputError, "3 codebook sizes given for 2"),
    ({"levels": 0}, InputError, "levels must be"),
    ({"levels": 99}, InputError, "levels must be between 1 and 8"),
    ({"codebook_size": -5}, InputError, "codebook size must be between"),
    ({"name": "3"}, InputError, "must start with a letter"),
    ({"name": "v1"}, StateError, "already exists and is frozen"),
    ({"residual": "both"}, InputError, "residual mode"),
])
def test_refused_training_changes_nothing(trained, migrated_url, kwargs, error, message):
    reg, _ = trained
    before = dump(migrated_url)
    with pytest.raises(error, match=message):
        reg.train(**kwargs)
    assert dump(migrated_url) == before


def test_training_without_items_is_an_error(reg):
    with pytest.raises(InputError, match="no items to train on"):
        reg.train()


def test_failure_while_writing_leaves_no_half_made_version(reg, catalog, migrated_url):
    """A database error in the middle of writing the assignments rolls the whole train back.
    PostgreSQL writes a trained version's IDs into a new table, its partition, where no
    trigger of the assignments table sees them: there the error comes after them all, with
    the train's event, and the new table goes too."""
    reg.add(*catalog)
    before = dump(migrated_url)
    if migrated_url.startswith("sqlite"):
        fail_inserts(migrated_url, "assignments", "NEW.item_id = 300")
    else:
        fail_inserts(migrated_url, "events", "NEW.action = 'train'")
    with pytest.raises(Exception, match="boom"):
        reg.train(codebook_size=[8, 4])
    assert dump(migrated_url) == before
    assert reg.versions() == []
    assert partitions(migrated_url) == []


def test_changed_vectors_keep_old_ids_and_get_new_codes_in_new_versions(reg):
    keys = make_keys(300)
    reg.add(keys, make_vectors(300))
    first = reg.train(codebook_size=[8, 4]).version
    moved = make_vectors(300, seed=99)[:10]
    r = reg.add(keys[:10], moved)
    assert (r.changed, r.added, r.unchanged) == (10, 0, 0)
    # the old ID stays in version 1; version 2 is trained on the new vectors
    old = [x.id for x in reg.get(keys[:10], first.number)]
    reg.train(codebook_size=[8, 4])
    assert [x.id for x in reg.get(keys[:10], first.number)] == old
    np.testing.assert_array_equal(_codes(reg, keys[:10], 2),
                                  engine.encode(moved, reg.codebooks(2)))


def test_nearest_free_ids_are_the_engines_codes_numbered_in_item_order(reg, catalog):
    """With nearest-free, too, the stored IDs are the engine's codes, numbered in item
    order."""
    keys, vectors = catalog
    reg.add(keys, vectors)
    # 600 items in 128 tuples: rows alone on theirs, rows moved, and rows numbered on
    v = reg.train(codebook_size=[8, 4, 4], seed=3).version
    result = engine.train(vectors, engine.TrainParams((8, 4, 4), seed=3))
    records = reg.get(keys, v.number)
    np.testing.assert_array_equal(_codes(reg, keys, v.number), result.codes)
    disamb = np.array([r.disambiguation for r in records])
    np.testing.assert_array_equal(disamb, disambiguate(CodeSpace((8, 4, 4)).pack(result.codes)))
    assert result.stats["moved"] > 0 and disamb.max() > 0


def test_a_warm_train_numbers_ids_as_its_parent_left_them(reg, catalog):
    """Rows that keep their tuple keep their number; the others count on after the numbers
    kept."""
    keys, vectors = catalog
    reg.add(keys, vectors)
    reg.train(codebook_size=[8, 4, 4], seed=3, collisions="suffix")
    new_keys = make_keys(200, start=600)
    reg.add(new_keys, make_vectors(200, seed=5))
    v2 = reg.train(from_version=1, collisions="nearest-free").version
    space = CodeSpace((8, 4, 4))
    old = reg.get(keys, 1)
    old_packed = np.r_[space.pack(np.array([r.codes for r in old])), np.full(200, -1)]
    old_disamb = np.r_[[r.disambiguation for r in old], np.full(200, -1)]
    new = reg.get(keys + new_keys, v2.number)
    packed = space.pack(np.array([r.codes for r in new]))
    got = np.array([r.disambiguation for r in new])
    np.testing.assert_array_equal(got, disambiguate_keeping(packed, old_packed, old_disamb))
    assert ((got > 0) & (packed == old_packed)).any()  # kept numbers above 0 among them


def test_a_code_space_too_small_for_the_catalog_is_warned_about_with_sizes_that_fit(reg, run):
    reg.add(make_keys(600), make_vectors(600))
    out = json.loads(run("train", "-k", "4,4", "--json").output)
    small = [w for w in out["warnings"] if "code space" in w]
    assert len(small) == 1
    # 8 tuples per item wanted: 4,800 -> 128 x 128, or 4 x 4 with five more levels of 4
    assert "16 tuples (4 x 4) for 600 items, fewer than 2 per item" in small[0]
    assert "128,128 (16,384 tuples) or 4,4,4,4,4,4,4 (16,384 tuples)" in small[0]
    text = run("train", "-k", "4,4").output
    assert "warning: the code space has 16 tuples" in text
    roomy = json.loads(run("train", "-k", "64,64", "--json").output)
    assert not any("code space" in w for w in roomy["warnings"])
