"""`registry verify` and the database's own guards: a clean store passes; tampering with a
frozen version is refused by the database, and what gets past it (triggers dropped, bytes
flipped) is caught by verify and refused on load. Both databases."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, exc, text

from registry import DatabaseError, Registry

from .conftest import make_keys, make_vectors, sql


def unguard(url: str, table: str) -> None:
    """Take the database's guards off ``table``, as someone with raw access could."""
    eng = create_engine(url)
    try:
        with eng.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            else:
                names = conn.execute(text("SELECT name FROM sqlite_master WHERE type = "
                                          "'trigger' AND tbl_name = :t"), {"t": table})
                for name in names.scalars().all():
                    conn.execute(text(f"DROP TRIGGER {name}"))
    finally:
        eng.dispose()


def checks_failing(reg: Registry) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in reg.verify().violations:
        out.setdefault(v.check, []).append(v.message)
    return out


def test_a_store_used_normally_verifies_clean(trained, run):
    reg, v = trained
    reg.add(make_keys(100, start=600), make_vectors(100, seed=5))
    reg.assign(v.number)  # IDs assigned after freezing grow the seal
    reg.train(codebook_size=[8, 4, 4], name="draft")  # a draft has no seal
    reg.retire("draft")
    report = reg.verify()
    assert report.ok, report.violations
    assert report.versions == 2 and report.ids == 700 + 700
    result = run("verify")
    assert result.exit_code == 0 and result.output.startswith("ok: 2 versions, 1400 IDs")
    assert json.loads(run("verify", "--json").output)["ok"] is True


@pytest.mark.parametrize("statement", [
    "UPDATE assignments SET disamb = disamb + 1 WHERE version_id = 1",
    "DELETE FROM assignments WHERE version_id = 1",
    "UPDATE codebooks SET k = 9 WHERE version_id = 1",
    "DELETE FROM codebooks WHERE version_id = 1",
    "INSERT INTO codebooks (version_id, level, k, dim, dtype, sha256, data) "
    "VALUES (1, 4, 2, 16, 'float32', 'x', 'x')",
    "UPDATE versions SET state = 'draft' WHERE id = 1",
    "UPDATE versions SET params = '{}' WHERE id = 1",
    "DELETE FROM versions WHERE id = 1",
    "UPDATE seals SET frozen_count = 0",
    "DELETE FROM seals",
])
def test_the_database_refuses_to_change_a_frozen_version(trained, migrated_url, statement):
    with pytest.raises(exc.DBAPIError, match="never"):
        sql(migrated_url, statement)
    assert trained[0].verify().ok


@pytest.mark.parametrize("statement", [
    "UPDATE assignments_v1 SET disamb = disamb + 1",
    "DELETE FROM assignments_v1",
    "TRUNCATE assignments_v1",
    "TRUNCATE assignments",
])
def test_a_frozen_versions_own_table_refuses_changes_too(trained, migrated_url, statement):
    """PostgreSQL keeps each version's IDs in a table of its own, a partition of assignments:
    a statement naming it directly meets the same guards."""
    if not migrated_url.startswith("postgresql"):
        pytest.skip("PostgreSQL partitions")
    with pytest.raises(exc.DBAPIError, match="never"):
        sql(migrated_url, statement)
    assert trained[0].verify().ok


@pytest.mark.parametrize("statement, missing", [
    ("ALTER TABLE assignments_v1 DISABLE TRIGGER guard_assignments_truncate",
     "guard_assignments_truncate on assignments_v1"),
    # the partition keeps a trigger of the same name: the parent's must still be missed
    ("DROP TRIGGER guard_assignments_truncate ON assignments", "guard_assignments_truncate"),
])
def test_verify_reports_a_guard_missing_on_a_partition_or_its_parent(trained, migrated_url,
                                                                    statement, missing):
    if not migrated_url.startswith("postgresql"):
        pytest.skip("PostgreSQL partitions")
    sql(migrated_url, statement)
    found = [v for v in trained[0].verify().violations if v.check == "schema"]
    assert [r["trigger"] for v in found for r in v.rows] == [missing]


def test_a_draft_can_still_be_changed(reg, catalog, migrated_url):
    reg.add(*catalog)
    reg.train(codebook_size=[8, 4])
    sql(migrated_url, "UPDATE assignments SET disamb = disamb + 100 WHERE version_id = 1")
    assert reg.verify().ok  # drafts are not sealed: nothing to hold them to


def test_a_flipped_codebook_byte_is_caught_and_refused_on_load(trained, migrated_url, run):
    reg, v = trained
    unguard(migrated_url, "codebooks")
    eng = create_engine(migrated_url)
    with eng.begin() as conn:
        blob = bytearray(conn.execute(text("SELECT data FROM codebooks WHERE version_id = 1 "
                                           "AND level = 2")).scalar())
        blob[-5] ^= 0x01
        conn.execute(text("UPDATE codebooks SET data = :d WHERE version_id = 1 AND level = 2"),
                     {"d": bytes(blob)})
    eng.dispose()
    failing = checks_failing(reg)
    assert any("level 2 of version 1 fails its sha256 check" in m
               for m in failing["codebooks"])
    assert any("guard triggers are missing or disabled" in m for m in failing["schema"])
    with pytest.raises(DatabaseError, match="fails its sha256 check"):
        reg.codebooks(v.number)
    result = run("verify")
    assert result.exit_code == 1 and "fails its sha256 check" in result.output
    assert "Traceback" not in result.output


def test_a_rewritten_id_of_a_frozen_version_is_caught(trained, migrated_url):
    reg, _ = trained
    unguard(migrated_url, "assignments")
    # one ID swapped for another that nobody holds: still unique, still in range
    sql(migrated_url, "UPDATE assignments SET disamb = 999 WHERE version_id = 1 AND item_id = "
                      "(SELECT MIN(item_id) FROM assignments WHERE version_id = 1)")
    assert any("IDs were changed since it was frozen" in m
               for m in checks_failing(reg)["frozen versions"])
    sql(migrated_url, "DELETE FROM assignments WHERE version_id = 1 AND item_id = "
                      "(SELECT MAX(item_id) FROM assignments WHERE version_id = 1)")
    assert any("holds 599 IDs; it held 600 when frozen" in m
               for m in checks_failing(reg)["frozen versions"])


def test_out_of_range_codes_orphans_and_dangling_aliases_are_reported(trained, migrated_url):
    reg, _ = trained
    unguard(migrated_url, "assignments")
    sql(migrated_url,
        # 8 x 4 x 4 = 128 code tuples: 128 is out of range
        "UPDATE assignments SET code = 128 WHERE version_id = 1 AND item_id = "
        "(SELECT MIN(item_id) FROM assignments WHERE version_id = 1)",
        "INSERT INTO assignments (version_id, item_id, code, disamb, incremental) "
        "VALUES (1, 99999, 5, 77, TRUE)")
    eng = create_engine(migrated_url)
    with eng.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE aliases DROP CONSTRAINT fk_aliases_version_id_versions"))
        else:
            conn.execute(text("PRAGMA foreign_keys = OFF"))
        conn.execute(text("INSERT INTO aliases (name, version_id, updated_at) "
                          "VALUES ('ghost', 42, CURRENT_TIMESTAMP)"))
    eng.dispose()
    report = reg.verify()
    by_check = {v.check: v for v in report.violations}
    assert by_check["code ranges"].rows[0]["code"] == 128
    assert by_check["orphan IDs"].rows == [{"version": 1, "item": 99999, "code": 5,
                                            "number": 77}]
    assert by_check["aliases"].rows == [{"alias": "ghost", "version": 42, "state": None}]
    assert "frozen versions" in by_check  # the seal saw the rows change too


def test_a_database_at_an_older_schema_fails_verify(migrated_url, run):
    with Registry(migrated_url) as reg:
        reg.init()
    sql(migrated_url, "UPDATE alembic_version SET version_num = '0003_item_keys_index'")
    result = run("verify")
    assert result.exit_code == 1 and "run `registry init` to upgrade it" in result.output
