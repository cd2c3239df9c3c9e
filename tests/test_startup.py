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
    print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize("args", [["get", "item00001"], ["lookup", "1"], ["versions"],
                                  ["get", "item00001", "--json"]])
def test_read_commands_do_not_import_heavy_modules(trained, migrated_url, args):
    done = subprocess.run([sys.executable, "-c", PROBE, "--db", migrated_url, *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY="
    assert "item" in done.stdout or "version" in done.stdout
    # a SQLite registry never loads the PostgreSQL dialect (20 ms of start-up)
    uses_pg = migrated_url.startswith("postgresql")
    assert f"POSTGRESQL={uses_pg}" in done.stdout.splitlines()


def test_the_probe_would_see_faiss(trained, migrated_url):
    """The check above can fail: a command that does need faiss shows up."""
    done = subprocess.run([sys.executable, "-c", PROBE, "--db", migrated_url, "assign"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY=faiss"
