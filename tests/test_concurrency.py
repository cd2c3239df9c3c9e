"""Four processes at once, each registering an overlapping part of the catalog and assigning
into the same frozen version: afterwards every item has exactly one ID, no ID is shared,
verify is clean and no process saw an error. Both databases."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from registry import Registry

from .conftest import make_keys, make_vectors

WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    from registry import Registry

    url, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = np.load(sys.argv[4])
    keys = [f"item{i:05d}" for i in range(lo, hi)]
    with Registry(url) as reg:
        # in slices, assigning after each: adds and assigns of the others interleave
        for start in range(0, len(keys), 100):
            reg.add(keys[start:start + 100], data[lo + start:lo + start + 100])
            reg.assign(1, batch_size=40)
    print("done")
""")


def test_four_processes_adding_overlapping_items_and_assigning(trained, migrated_url,
                                                               tmp_path):
    reg, v = trained
    data = tmp_path / "vectors.npy"
    np.save(data, np.concatenate([make_vectors(600), make_vectors(1000, seed=31)]))
    # items 600..1599 are new; each process takes 500 of them, overlapping its neighbours
    ranges = [(500, 1000), (750, 1250), (1000, 1500), (1100, 1600)]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, migrated_url, str(lo), str(hi),
                               str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for lo, hi in ranges]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    assert all(out.strip() == "done" and err == "" for out, err in outs), outs

    keys = make_keys(1600)
    records = reg.get(keys, v.number)
    assert len(records) == 1600
    assert len({r.id for r in records}) == 1600  # no ID shared
    assert {r.key for r in records} == set(keys)  # every item has one
    before = {r.key: r.id for r in records[:600]}
    assert all(before[k] == i for k, i in before.items())
    report = reg.verify()
    assert report.ok, report.violations
    assert report.ids == 1600


def test_the_same_items_added_by_two_processes_at_once_exist_once(migrated_url, tmp_path):
    data = tmp_path / "vectors.npy"
    np.save(data, make_vectors(1600, seed=8))
    adder = textwrap.dedent("""
        import sys
        import numpy as np
        from registry import Registry
        data = np.load(sys.argv[2])
        with Registry(sys.argv[1]) as reg:
            r = reg.add([f"item{i:05d}" for i in range(1600)], data, commit_every=50)
        print(r.added + r.unchanged)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", adder, migrated_url, str(data)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    assert [int(out) for out, _ in outs] == [1600] * 3  # each saw every row once
    with Registry(migrated_url) as reg:
        report = reg.items(limit=5000)
        assert report.counts["live"] == 1600 and len(report.rows) == 1600
        np.testing.assert_array_equal(reg.embeddings(make_keys(1600)), np.load(data))
