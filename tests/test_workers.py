"""Several assigners at once: worker processes (--workers), independent processes as on
several hosts, and a killed assigner whose batch another one picks up. Both databases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from registry import Registry

from .conftest import make_keys, make_vectors

NEW = 1200


@pytest.fixture
def waiting(trained):
    """The trained registry (600 items in frozen v1) plus NEW items without an ID in v1."""
    reg, v = trained
    reg.add(make_keys(NEW, start=600), make_vectors(NEW, seed=21))
    return reg, v


def check_every_item_has_one_id(url: str, version: int, items: int) -> None:
    eng = create_engine(url)
    with eng.connect() as conn:
        rows = conn.execute(text("SELECT item_id, code, disamb FROM assignments "
                                 "WHERE version_id = :v"), {"v": version}).all()
        live = conn.execute(text("SELECT count(*) FROM items WHERE removed_at IS NULL")
                            ).scalar()
    eng.dispose()
    assert live == items
    assert len(rows) == items
    assert len({r.item_id for r in rows}) == items  # one ID per item
    assert len({(r.code, r.disamb) for r in rows}) == items  # no ID shared


def give_ids(conn, v, item_ids: list[int]) -> None:
    """IDs in version ``v`` for ``item_ids``, as another assigner would write them (on
    tuples of their own: number 1000 of the first codes)."""
    from registry.store import assignments

    n = len(item_ids)
    packed = np.arange(n, dtype=np.int64) + v.space.pack(np.zeros((1, 3), int))[0]
    assignments.write(conn, v.number, np.array(item_ids), packed,
                      np.full(n, 1000, dtype=np.int64), incremental=True)


def cli(url: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "registry.cli", "--db", url, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_worker_processes_share_the_work(waiting, migrated_url):
    reg, v = waiting
    r = reg.assign(v.number, batch_size=100, workers=3)
    # a batch of 100 items ends with the rest of its allocation block of 64 item ids, so
    # it holds at most 163: at least NEW / 163 batches, more where another worker held part
    assert r.assigned == NEW and r.batches >= NEW // 163
    check_every_item_has_one_id(migrated_url, v.number, 600 + NEW)
    assert reg.assign(v.number, workers=2).assigned == 0


def test_independent_assigners_never_duplicate_or_skip(waiting, migrated_url):
    _, v = waiting
    procs = [cli(migrated_url, "assign", "--batch-size", "50", "--json") for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    assert all("Traceback" not in err for _, err in outs)


    assert sum(json.loads(out)["assigned"] for out, _ in outs) == NEW
    check_every_item_has_one_id(migrated_url, v.number, 600 + NEW)


def test_a_killed_assigners_batch_is_picked_up(waiting, migrated_url, tmp_path):
    _, v = waiting
    marker = tmp_path / "claimed"
    stuck = cli(migrated_url, "assign", "--batch-size", "300",
                env={"REGISTRY_PAUSE_AT": "assign-claimed", "REGISTRY_PAUSE_MARKER": str(marker)})
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert stuck.poll() is None and time.monotonic() < deadline, stuck.communicate()
        time.sleep(0.05)
    # the stuck assigner holds its claimed batch; another one takes the rest and waits
    other = cli(migrated_url, "assign", "--batch-size", "300", "--json")
    time.sleep(1.0)
    stuck.send_signal(signal.SIGKILL)
    stuck.wait(timeout=30)
    out, err = other.communicate(timeout=120)
    assert other.returncode == 0, err


    assert json.loads(out)["assigned"] == NEW  # its own batches and the killed one's
    check_every_item_has_one_id(migrated_url, v.number, 600 + NEW)
    with Registry(migrated_url) as reg:
        assert reg.assign(v.number).assigned == 0


def test_items_added_while_assigning_get_ids_in_the_same_run(waiting, migrated_url,
                                                             monkeypatch):
    if not migrated_url.startswith("postgresql"):
        pytest.skip("SQLite: an add waits for the assigner's write lock")
    reg, v = waiting
    import registry.assigning as assigning

    added = []

    def add_once(name: str) -> None:
        if name == "assign-claimed" and not added:
            added.append(True)  # while the first batch is claimed, not yet committed
            with Registry(migrated_url) as other:
                other.add(make_keys(50, start=600 + NEW), make_vectors(50, seed=22))

    monkeypatch.setattr(assigning, "pause_point", add_once)
    # the first round lists the NEW items only; the next finds the 50 above them
    assert reg.assign(v.number, batch_size=500).assigned == NEW + 50
    check_every_item_has_one_id(migrated_url, v.number, 600 + NEW + 50)


def test_a_claimed_block_is_held_until_its_transaction_ends(waiting, migrated_url):
    if not migrated_url.startswith("postgresql"):
        pytest.skip("SQLite: one writer at a time holds the whole database")
    from registry.store import items

    _, v = waiting
    with Registry(migrated_url) as a, Registry(migrated_url) as b:
        with a._tx(write=True) as conn_a:
            space = items.single_space(conn_a)
            pending = items.unassigned_ids(conn_a, space, v.number)
            first = pending[:items.CLAIM_BLOCK]  # whole blocks, and some of the next
            got_a, vectors = items.claim(conn_a, space, v.number, pending[:300])
            assert got_a.tolist() == pending[:300] and vectors.shape == (300, space.dim)
            with b._tx(write=True) as conn_b:
                # another assigner gets none of those blocks, but the ones after them
                got_b, _ = items.claim(conn_b, space, v.number, pending[:600])
                held = {i // items.CLAIM_BLOCK for i in pending[:300]}
                assert got_b.tolist() == [i for i in pending[:600]
                                          if i // items.CLAIM_BLOCK not in held]
            conn_a.rollback()  # as when an assigner dies: its blocks are free again
        with b._tx(write=True) as conn_b:
            assert items.claim(conn_b, space, v.number, first)[0].tolist() == first


def test_ids_committed_while_a_batch_encodes_are_not_landed_on(trained, migrated_url,
                                                                monkeypatch):
    # another assigner commits IDs while this one encodes its first batch, before it locks
    # the version: nearest-free must know of them, not land on their tuples
    if not migrated_url.startswith("postgresql"):
        pytest.skip("SQLite: a batch holds the write lock from its claim on")
    import registry.assigning as assigning
    from registry.store import assignments, seals

    reg, _ = trained
    # room for the new items; blocks small enough that the first batch leaves the last
    # items to the other assigner (whose IDs a real one could give only to unclaimed items)
    v = reg.train(codebook_size=[16, 16, 16], seed=3, allocation_block=64).version
    reg.freeze(v.number)
    reg.add(make_keys(NEW, start=600), make_vectors(NEW, seed=21))
    real_encode = assigning.engine.encode
    taken = []

    def encode_while_another_commits(vectors, books, *args, **kwargs):
        codes = real_encode(vectors, books, *args, **kwargs)
        if not taken:
            # the other assigner gives the last new items the free tuples that this
            # batch's items are encoded to, and commits
            with Registry(migrated_url) as other, other._tx(write=True) as conn:
                packed = np.unique(v.space.pack(codes))
                free = packed[~np.isin(packed, assignments.issued_codes(conn, v.number))]
                last = text("SELECT id FROM items ORDER BY id DESC LIMIT :n")
                ids = np.array(conn.execute(last, {"n": int(free.size)}).scalars().all())
                zeros = np.zeros(free.size, dtype=np.int64)
                assignments.write(conn, v.number, ids, free, zeros, incremental=True)
                seals.grow(conn, v.number, ids, free, zeros)
            taken.append(free.size)
        return codes

    monkeypatch.setattr(assigning.engine, "encode", encode_while_another_commits)
    r = reg.assign(v.number, batch_size=100)
    assert taken and taken[0] > 10
    assert r.assigned == NEW - taken[0]
    check_every_item_has_one_id(migrated_url, v.number, 600 + NEW)


@pytest.mark.parametrize("step", [1, 3])
def test_a_claim_leaves_out_items_given_an_id_since_they_were_listed(waiting, migrated_url,
                                                                     step):
    # another assigner commits IDs for some listed items before this one claims them; the
    # claim asks which of its items hold one now: over their range where they are dense
    # (step 1), item by item where they are not (step 3)
    if not migrated_url.startswith("postgresql"):
        pytest.skip("SQLite: the writer lock keeps other assigners out of a batch")
    from registry.store import items

    reg, v = waiting
    with reg._tx(write=False) as conn:
        space = items.single_space(conn)
        wanted = items.unassigned_ids(conn, space, v.number)[:600:step]
    given = [wanted[0], wanted[7], wanted[-1]]
    with Registry(migrated_url) as other, other._tx(write=True) as conn:
        give_ids(conn, v, given)
    with reg._tx(write=True) as conn:
        got, vectors = items.claim(conn, space, v.number, wanted)
    assert got.tolist() == [i for i in wanted if i not in given]
    assert vectors.shape == (len(wanted) - 3, space.dim)


def test_the_list_of_items_without_an_id_leaves_out_ids_given_above_its_start(
        waiting, migrated_url):
    # some items above ``after`` hold IDs: the list must look each item up among them
    if not migrated_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's assign lists the items; SQLite's reads them batch by batch")
    from registry.store import items

    reg, v = waiting
    with reg._tx(write=False) as conn:
        space = items.single_space(conn)
        new = items.unassigned_ids(conn, space, v.number)
        assert len(new) == NEW
    given = new[10:13]
    with reg._tx(write=True) as conn:
        give_ids(conn, v, given)
    with reg._tx(write=False) as conn:
        assert items.unassigned_ids(conn, space, v.number) == new[:10] + new[13:]
        assert items.unassigned_ids(conn, space, v.number, after=new[5]) == \
            new[6:10] + new[13:]
        assert items.unassigned_ids(conn, space, v.number, after=new[12]) == new[13:]


def test_a_workers_error_keeps_its_kind(trained, migrated_url):
    """An error met in a worker process comes back as itself: under --json its kind is the
    library's (state, here), not a bare error."""
    reg, v = trained
    reg.train(codebook_size=[8, 4, 4], name="other")
    reg.freeze("other")
    reg.activate("other")
    reg.retire(v.number)
    done = cli(migrated_url, "assign", "-v", str(v.number), "--workers", "2", "--json")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 1 and out == ""
    assert json.loads(err) == {"error": "state", "detail": f"{v.label} is retired; no new IDs "
                                                           "are given in it"}
