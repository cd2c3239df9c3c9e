"""diff and drift between versions and populations, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from .conftest import make_keys, make_vectors


def _frozen_rows(url: str) -> dict:
    """The codebooks and assignments of frozen versions: what no command may change."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.connect() as conn:
        books = conn.execute(text("SELECT c.version_id, c.level, c.sha256 FROM codebooks c "
                                  "JOIN versions v ON v.id = c.version_id "
                                  "WHERE v.state = 'frozen' ORDER BY 1, 2")).all()
        ids = conn.execute(text("SELECT a.version_id, a.item_id, a.code, a.disamb "
                                "FROM assignments a JOIN versions v ON v.id = a.version_id "
                                "WHERE v.state = 'frozen'")).all()
    eng.dispose()
    return {"codebooks": [tuple(r) for r in books], "ids": {tuple(r) for r in ids}}


def test_diff_of_a_version_with_itself_shows_no_churn(trained):
    reg, _ = trained
    r = reg.diff(1, "v1")
    assert (r.common, r.only_v1, r.only_v2) == (600, 0, 0)
    assert r.churn == [0.0, 0.0, 0.0] and not r.aligned
    assert all(m["mean"] == 0.0 for m in r.movement)


def test_alignment_recovers_level1_agreement_of_a_cold_retrain(trained, tmp_path):
    reg, _ = trained
    # the catalog has 12 clusters: two cold trainings with 12 level-1 codes find mostly the
    # same clusters (k-means from another seed merges and splits a few) under other labels
    a = reg.train(codebook_size=[12, 4], seed=1, name="a", collisions="suffix").version
    cold = reg.train(codebook_size=[12, 4], seed=99, name="cold",
                     collisions="suffix").version
    r = reg.diff(a.number, cold.number, remap=tmp_path / "remap.csv")
    assert r.aligned and r.churn[0] > 0.6  # k-means labels are arbitrary
    assert r.aligned_churn[0] < 0.35 and r.aligned_churn[0] < r.churn[0] / 2  # matched
    assert r.movement[0]["mean"] is not None
    rows = list(csv.DictReader((tmp_path / "remap.csv").open()))
    assert len(rows) == 600
    row = next(r for r in rows if r["key"] == "item00003")
    assert (row["old_id"], row["new_id"]) == (reg.get(["item00003"], "a")[0].id,
                                              reg.get(["item00003"], "cold")[0].id)


def test_diff_counts_items_in_one_version_only(trained):
    reg, _ = trained
    reg.add(make_keys(40, start=600), make_vectors(40, seed=3))
    reg.remove(["item00000"])
    reg.train(codebook_size=[8, 4, 4], name="later")
    r = reg.diff("v1", "later")
    assert (r.common, r.only_v1, r.only_v2) == (599, 1, 40)


def test_drift_ok_for_the_same_distribution_and_names_grown_clusters_when_shifted(trained):
    reg, _ = trained
    reg.add(make_keys(300, start=600), make_vectors(300, seed=0)[::-1] + 0.01)
    reg.assign()
    same = reg.drift()
    assert same.drift.compared == 300 and same.drift.reference == 600
    assert same.drift.verdict == "ok", same.drift.reasons
    # a shifted catalog: many new items from two clusters only
    rng = np.random.default_rng(5)
    centres = np.random.default_rng(12345).standard_normal((12, 16))
    shifted = centres[rng.choice([2, 7], 400)] + 0.35 * rng.standard_normal((400, 16))
    keys = make_keys(400, start=900, prefix="shift")
    reg.add(keys, shifted.astype(np.float32))
    reg.assign()
    moved = reg.drift()
    assert moved.drift.verdict == "retrain", moved.drift.reasons
    new_codes = {r.codes[0] for r in reg.get(keys)}
    assert {c.code for c in moved.drift.grew[:2]} <= new_codes
    later = set(keys) | set(make_keys(300, start=600))  # examples are new items
    assert all(e in later for c in moved.drift.grew for e in c.examples)


def test_drift_between_versions_and_reports(trained, run, tmp_path, migrated_url):
    reg, _ = trained
    reg.add(make_keys(200, start=600), make_vectors(200, seed=8))
    reg.train(codebook_size=[8, 4, 4], name="bigger")
    frozen = _frozen_rows(migrated_url)
    out = json.loads(run("drift", "1", "bigger", "--json", "--html",
                         str(tmp_path / "drift.html")).output)
    assert out["reference_items"] == 600 and out["compared_items"] == 800
    assert out["verdict"] == "ok"
    assert set(out["thresholds"]) >= {"js_vs_floor_watch", "error_ratio_retrain"}
    page = (tmp_path / "drift.html").read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") == 3
    assert "verdict: ok" in page and "<script" not in page
    text = run("diff", "1", "bigger", "--html", str(tmp_path / "diff.html")).output
    assert "churn after alignment" in text and "was not trained from version 1" in text
    assert (tmp_path / "diff.html").read_text().count("<svg") == 3
    assert _frozen_rows(migrated_url) == frozen


def test_drift_between_versions_counts_shared_items_once(trained):
    """The newer version's items include the older one's: the raw collision rate after is
    that of the whole catalog under the older codebooks, each item once (it was computed
    over both populations stacked, each shared item colliding with itself)."""
    from registry import engine
    from registry.quality import collision_rate

    reg, v1 = trained
    reg.add(make_keys(200, start=600), make_vectors(200, seed=8))
    reg.train(codebook_size=[8, 4, 4], name="bigger")
    r = reg.drift("1", "bigger")
    books = reg.codebooks(1)
    everything = reg.embeddings(make_keys(800))
    first = reg.embeddings(make_keys(600))
    assert r.drift.collision_before == pytest.approx(
        collision_rate(engine.encode(first, books, v1.residual, v1.beam)))
    assert r.drift.collision_after == pytest.approx(
        collision_rate(engine.encode(everything, books, v1.residual, v1.beam)))


def test_drift_with_no_new_items_says_so_and_prints_no_figures(trained, run, tmp_path):
    text = run("drift", "1", "--html", str(tmp_path / "drift.html")).output
    assert "nothing to compare" in text and "registry assign" in text
    assert not any(word in text for word in ("noise floor", "ratio", "shrank", "grew",
                                             "verdict: ok", "0.0"))
    out = json.loads(run("drift", "1", "--json").output)
    assert out["compared_items"] == 0 and out["reference_items"] == 600
    assert out["verdict"] is None and "nothing to compare" in out["reasons"][0]
    assert "js_divergence" not in out and "noise_floor" not in out
    page = (tmp_path / "drift.html").read_text()
    assert "nothing to compare" in page and "<svg" not in page


@pytest.mark.parametrize("args, message", [
    (["diff", "1", "9"], "unknown version: '9'"),
    (["diff", "1", "1", "--remap", "x.txt"], "unknown output type"),
    (["drift", "7"], "unknown version"),
])
def test_diff_drift_errors(trained, run, args, message):
    result = run(*args)
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_train_from_a_version_keeps_ids_and_diff_needs_no_alignment(trained, run):
    reg, _ = trained
    reg.add(make_keys(150, start=600), make_vectors(150, seed=21))  # 25% more
    reg.train(codebook_size=[8, 4, 4], seed=5, name="cold")
    warm = reg.train(from_version="v1", name="warm").version
    assert warm.parent == 1 and warm.params["codebook_sizes"] == [8, 4, 4]
    assert warm.beam == reg.version(1).beam > 1  # new items are encoded as the parent's
    stable = warm.stats["stability"]
    assert stable["parent"] == 1 and stable["items"] == 600
    assert stable["same_id"] >= 0.9 and stable["same_codes"][0] >= stable["same_id"]
    old = {r.key: r.id for r in reg.get(make_keys(600), 1)}
    new = {r.key: r.id for r in reg.get(make_keys(600), "warm")}
    assert sum(old[k] == new[k] for k in old) / 600 == pytest.approx(stable["same_id"])
    assert len({r.id for r in reg.get(make_keys(750), "warm")}) == 750
    d = reg.diff(1, "warm")
    assert not d.aligned and d.churn[-1] == pytest.approx(1 - stable["same_codes"][-1])
    cold_stable = 1 - reg.diff(1, "cold").churn[-1]
    assert cold_stable < 0.5 < stable["same_id"]
    shown = run("train", "--from", "warm", "--name", "again").output
    assert "stability against version 3: of its 750 items" in shown


@pytest.mark.parametrize("kwargs, message", [
    ({"codebook_size": 16}, "keeps its codebook sizes"),
    ({"residual": "normalized"}, "keeps its plain residuals"),
    ({"stickiness": -1}, "stickiness must be"),
    ({"from_version": "nope"}, "unknown version"),
])
def test_train_from_refusals(trained, migrated_url, kwargs, message):
    from .conftest import dump

    reg, _ = trained
    before = dump(migrated_url)
    with pytest.raises(Exception, match=message):
        reg.train(**{"from_version": 1, **kwargs})
    assert dump(migrated_url) == before


def test_frozen_versions_are_untouched_by_every_lifecycle_command(trained, run, tmp_path,
                                                                   migrated_url):
    reg, _ = trained
    reg.add(make_keys(100, start=600), make_vectors(100, seed=31))
    before = _frozen_rows(migrated_url)
    commands = [
        ["train", "--from", "1", "--name", "two", "--reason", "growth"], ["freeze", "two"],
        ["activate", "two"], ["diff", "1", "two", "--remap", str(tmp_path / "r.jsonl")],
        ["drift", "1"], ["drift", "1", "two"], ["export", "1", "-o", str(tmp_path / "e.csv")],
        ["history"], ["rollback"], ["assign"], ["retire", "two"], ["versions"], ["items"],
    ]
    for args in commands:
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
    after = _frozen_rows(migrated_url)
    # version 1's codebooks are as they were; its IDs only grew (the rollback assigned the
    # 100 new items into it), and not one of the IDs issued before changed
    assert [b for b in after["codebooks"] if b[0] == 1] == before["codebooks"]
    assert before["ids"] <= after["ids"]
    assert len([i for i in after["ids"] if i[0] == 1]) == 700
    assert reg.history(limit=20)[-1].action == "train"
    assert any(e.reason == "growth" for e in reg.history(limit=20))


def test_report_tables_align_text_left_and_charts_have_axes():
    from registry.report import _table, bars

    page = _table(["code", "share", "examples"], [[3, "12.50%", "389-ds-base, 0ad, 2048"]])
    assert "<td>3</td><td>12.50%</td><td class=l>389-ds-base, 0ad, 2048</td>" in page
    assert "<th>code</th><th>share</th><th class=l>examples</th>" in page
    svg = bars(np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.6, 0.3]), "before", "after")
    # a y axis of shares up to a round top (60% -> 100%), code numbers under the bars and
    # each share printed over its bar where there are few codes
    assert all(f">{tick}</text>" in svg for tick in ("0%", "25%", "50%", "75%", "100%"))
    assert all(f">{code}</text>" in svg for code in (0, 1, 2)) and ">code</text>" in svg
    assert ">60.0%</text>" in svg and "<title>code 1, after: 60.00%</title>" in svg


def test_drift_and_stats_read_in_chunks_as_in_one(trained, monkeypatch):
    """Populations read 37 vectors at a time give the figures of one read: across items
    assigned later and removed ones, in the version's two populations."""
    from registry import analysis

    reg, _ = trained
    reg.add(make_keys(150, start=600), make_vectors(150, seed=4)[::-1] + 0.02)
    reg.assign()
    reg.remove(["item00005", "item00200", make_keys(1, start=700)[0]])
    whole_drift, whole_stats = reg.drift().drift.to_dict(), reg.stats(1, sample=300).figures
    monkeypatch.setattr(analysis, "CHUNK_ROWS", 37)
    drift, stats = reg.drift().drift.to_dict(), reg.stats(1, sample=300).figures
    assert drift["compared_items"] == 150 and drift["reference_items"] == 600
    error = drift.pop("quantisation_error_ratio")
    assert error == pytest.approx(whole_drift.pop("quantisation_error_ratio"), rel=1e-6)
    assert drift == whole_drift
    assert stats["items"] == 750
    assert stats.pop("reconstruction_error") == pytest.approx(
        whole_stats.pop("reconstruction_error"), rel=1e-6)
    assert stats == whole_stats
