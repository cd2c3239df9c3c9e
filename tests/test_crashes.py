"""kill -9 in the middle of train, add and assign, at several points (the pause points of
registry.hooks): afterwards verify is clean, nothing half-made is visible, and running the
command again finishes the job. Both databases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry import Registry

from .conftest import make_keys, make_vectors


def killed_at(url: str, point: str, tmp_path: Path, *args: str) -> None:
    """Run ``registry ARGS`` until it reaches ``point``, then kill -9 it."""
    marker = tmp_path / f"at-{point}"
    proc = subprocess.Popen([sys.executable, "-m", "registry.cli", "--db", url, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "REGISTRY_PAUSE_AT": point,
                                 "REGISTRY_PAUSE_MARKER": str(marker)})
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def rerun(url: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "registry.cli", "--db", url, *args, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_clean(reg: Registry) -> None:
    report = reg.verify()
    assert report.ok, report.violations


@pytest.mark.parametrize("point", ["train-trained", "train-written"])
def test_a_killed_train_leaves_no_version(trained, migrated_url, tmp_path, point):
    reg, _ = trained
    killed_at(migrated_url, point, tmp_path, "train", "-k", "8,4,4", "--name", "v2")
    assert [v.version.number for v in reg.versions()] == [1]
    assert_clean(reg)
    out = rerun(migrated_url, "train", "-k", "8,4,4", "--name", "v2")
    assert out["version"]["version"] == 2 and out["items"] == 600
    assert_clean(reg)


@pytest.mark.parametrize("point, kept", [("add-written", 0), ("add-committed", 100)])
def test_a_killed_add_keeps_whole_batches_only(trained, migrated_url, tmp_path, point, kept):
    reg, _ = trained
    path = tmp_path / "new.jsonl"
    vectors = make_vectors(300, seed=44)
    path.write_text("".join(json.dumps({"key": k, "vector": v.tolist()}) + "\n"
                            for k, v in zip(make_keys(300, start=600), vectors, strict=True)))
    killed_at(migrated_url, point, tmp_path, "add", str(path), "--vector", "vector",
              "--commit-every", "100")
    assert reg.items().counts["live"] == 600 + kept
    assert_clean(reg)
    out = rerun(migrated_url, "add", str(path), "--vector", "vector", "--commit-every", "100")
    assert (out["added"], out["unchanged"]) == (300 - kept, kept)
    assert reg.items().counts["live"] == 900
    assert_clean(reg)


@pytest.mark.parametrize("point", ["assign-claimed", "assign-written"])
def test_a_killed_assign_loses_and_duplicates_nothing(trained, migrated_url, tmp_path, point):
    reg, v = trained
    reg.add(make_keys(300, start=600), make_vectors(300, seed=45))
    killed_at(migrated_url, point, tmp_path, "assign", "--batch-size", "100")
    assert reg.verify().ids == 600  # the killed batch was rolled back
    assert_clean(reg)
    assert rerun(migrated_url, "assign", "--batch-size", "100")["assigned"] == 300
    records = reg.get(make_keys(900), v.number)
    assert len({r.id for r in records}) == 900
    assert_clean(reg)


@pytest.mark.parametrize("point", ["assign-written", "rollback-assigned"])
def test_a_killed_rollback_leaves_the_alias_where_it_was(trained, migrated_url, tmp_path,
                                                         point):
    """A rollback gives the older version its missing IDs before it moves the alias: killed
    on the way, readers of the alias still see the version it pointed at, whose items all
    have IDs; run again, it finishes."""
    reg, _ = trained
    reg.add(make_keys(100, start=600), make_vectors(100, seed=5))
    reg.train(codebook_size=[8, 4, 4], name="v2", max_disambiguation=1000)
    reg.freeze("v2")
    reg.activate("v2")
    reg.add(make_keys(50, start=700), make_vectors(50, seed=6))  # new since both
    reg.assign("v2")
    killed_at(migrated_url, point, tmp_path, "rollback", "--reason", "worse")
    assert reg.version("active").name == "v2"
    assert reg.get(make_keys(750)).complete  # the alias's version: every item has an ID
    given = reg.get(make_keys(750), 1)
    assert len(given) == (750 if point == "rollback-assigned" else 600)
    assert_clean(reg)
    out = rerun(migrated_url, "rollback", "--reason", "worse")
    assert out["version"]["version"] == 1 and out["previous"] == 2
    assert out["assigned"] == 750 - len(given)
    assert reg.get(make_keys(750)).complete and reg.version("active").number == 1
    assert_clean(reg)
