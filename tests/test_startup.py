"""Read-only commands start fast: they never import faiss, torch or sentence-transformers."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from registry.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="registry", standalone_mode=False)
finally:
    heavy = [m for m in ("faiss", "torch", "sentence_transformers") if m in sys.modules]
    print("POSTGRESQL=" + str("sqlalchemy.dialects.postgresql" in sys.modules))
    print("DRIVERS=" + ",".join(m for m in ("psycopg", "psycopg2") if m in sys.modules))
    if "registry.allocator" in sys.modules:  # memory settings of array commands
        import numpy as np
        print("HUGEPAGE_ADVICE=" + str(np._core.multiarray._get_madvise_hugepage()))
    print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize("args, first", [
    (["get", "item00001"], "item00001\t"), (["lookup", "1"], "1-"),
    (["versions"], "version  name"), (["get", "item00001", "--json"], "{"),
    (["resolve", "1", "<a_1>"], "1\tprefix")])
def test_read_commands_do_not_import_heavy_modules(trained, migrated_url, args, first):
    done = subprocess.run([sys.executable, "-c", PROBE, "--db", migrated_url, *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY="
    assert done.stdout.startswith(first)  # the command's own answer came first
    # a SQLite registry never loads the PostgreSQL dialect (20 ms of start-up), and on
    # PostgreSQL these commands go through psycopg2, never importing psycopg 3 (90 ms)
    uses_pg = migrated_url.startswith("postgresql")
    assert f"POSTGRESQL={uses_pg}" in done.stdout.splitlines()
    assert f"DRIVERS={'psycopg2' if uses_pg else ''}" in done.stdout.splitlines()
    assert "HUGEPAGE_ADVICE" not in done.stdout  # nor ctypes for the allocator settings


def test_the_probe_would_see_faiss(trained, migrated_url):
    """The check above can fail: a command that does need faiss shows up."""
    done = subprocess.run([sys.executable, "-c", PROBE, "--db", migrated_url, "assign"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY=faiss"
    # it works through large arrays: freed memory is kept, no huge-page advice
    assert "HUGEPAGE_ADVICE=False" in done.stdout.splitlines()
    # ... and a command that writes connects through psycopg 3
    if migrated_url.startswith("postgresql"):
        assert "DRIVERS=psycopg" in done.stdout.splitlines()


def test_a_lookups_only_registry_reads_alike_and_refuses_the_rest(trained, migrated_url):
    from registry import Registry, RegistryError, StateError

    reg, _ = trained
    keys = [f"item{i:05d}" for i in range(0, 600, 7)]
    with Registry(migrated_url, lookups_only=True) as light:
        assert [r.id for r in light.get(keys)] == [r.id for r in reg.get(keys)]
        assert light.lookup("1", limit=50).to_dict() == reg.lookup("1", limit=50).to_dict()
        assert [v.to_dict() for v in light.versions()] == [v.to_dict() for v in reg.versions()]
        with pytest.raises(StateError, match="lookups only"):
            light.freeze(1)
        if migrated_url.startswith("postgresql"):
            # vectors come through psycopg 3's COPY, which psycopg2 cannot run
            with pytest.raises(RegistryError, match="need psycopg 3"):
                light.stats(1)
        else:
            assert light.stats(1).to_dict()["items"] == 600
