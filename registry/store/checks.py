"""The SQL behind ``registry verify``: each function finds the rows that break one invariant
(at most ``limit`` of them; the constraints should make every list empty)."""

from __future__ import annotations

from sqlalchemy import Connection

from .lookups import driver_rows

# the triggers of migration 0004 that refuse changes to frozen and retired versions
SQLITE_GUARDS = ("guard_codebooks_insert", "guard_codebooks_update", "guard_codebooks_delete",
                 "guard_assignments_update", "guard_assignments_delete",
                 "guard_versions_update", "guard_versions_delete", "guard_seals_update",
                 "guard_seals_delete")
PG_GUARDS = ("guard_codebooks", "guard_assignments", "guard_codebooks_truncate",
             "guard_assignments_truncate", "guard_versions", "guard_seals",
             "count_items_insert", "count_items_delete", "count_items_truncate")
PARTITION_GUARDS = ("guard_assignments", "guard_assignments_truncate")


def missing_guards(conn: Connection) -> list[str]:
    """The guard triggers that are missing (or disabled, on PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        # the tables' own triggers: a partition's guards carry the same names as the
        # parent's, and would hide a parent's that is missing
        found = driver_rows(conn, "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = "
                            "t.tgrelid WHERE c.relnamespace = current_schema()::regnamespace "
                            "AND NOT c.relispartition AND NOT t.tgisinternal "
                            "AND t.tgenabled <> 'D'")
        wanted = PG_GUARDS
    else:
        found = driver_rows(conn, "SELECT name FROM sqlite_master WHERE type = 'trigger'")
        wanted = SQLITE_GUARDS
    have = {r[0] for r in found}
    missing = [name for name in wanted if name not in have]
    if conn.dialect.name == "postgresql":
        # each version's own table (a partition) carries the assignments guards too: a
        # statement naming it runs its triggers, not the parent's
        rows = driver_rows(conn, "SELECT c.relname, t.tgname FROM pg_inherits i JOIN pg_class c "
                           "ON c.oid = i.inhrelid LEFT JOIN pg_trigger t ON t.tgrelid = c.oid "
                           "AND t.tgenabled <> 'D' WHERE i.inhparent = "
                           "to_regclass('assignments') ORDER BY c.relname")
        guards: dict[str, set[str]] = {}
        for table, trigger in rows:
            guards.setdefault(table, set()).add(trigger)
        missing += [f"{name} on {table}" for table, there in guards.items()
                    for name in PARTITION_GUARDS if name not in there]
    return missing



def item_counts(conn: Connection) -> tuple[int, int]:
    """PostgreSQL: (the item count the triggers of migration 0012 keep, the rows counted)."""
    (kept, rows), = driver_rows(conn, "SELECT (SELECT sum(items) FROM item_count), "
                                "(SELECT count(*) FROM items)")
    return int(kept or 0), int(rows)  # sum() gives a numeric: a Decimal that JSON refuses


def codebook_rows(conn: Connection) -> list[tuple]:
    """(version, level, k, dim, dtype, sha256, data) of every codebook."""
    return driver_rows(conn, "SELECT version_id, level, k, dim, dtype, sha256, data FROM codebooks "
                       "ORDER BY version_id, level")


def codes_out_of_range(conn: Connection, version: int, n_codes: int, limit: int) -> list[tuple]:
    """(item, packed code, number) of IDs whose code tuple lies outside the version's
    code space (a packed code outside [0, n_codes)) or whose number is negative."""
    return driver_rows(conn, "SELECT item_id, code, disamb FROM assignments WHERE version_id = ? "
                       "AND (code < 0 OR code >= ? OR disamb < 0) ORDER BY item_id LIMIT ?",
                       (version, n_codes, limit))


def shared_ids(conn: Connection, limit: int) -> list[tuple]:
    """(version, packed code, number, items) of IDs held by more than one item."""
    return driver_rows(conn, "SELECT version_id, code, disamb, COUNT(*) FROM assignments GROUP BY "
                       "version_id, code, disamb HAVING COUNT(*) > 1 "
                       "ORDER BY version_id, code, disamb LIMIT ?", (limit,))


def items_with_several_ids(conn: Connection, limit: int) -> list[tuple]:
    """(version, item, IDs) of items with more than one ID in a version."""
    return driver_rows(conn, "SELECT version_id, item_id, COUNT(*) FROM assignments GROUP BY "
                       "version_id, item_id HAVING COUNT(*) > 1 "
                       "ORDER BY version_id, item_id LIMIT ?", (limit,))


def orphan_ids(conn: Connection, limit: int) -> list[tuple]:
    """(version, item, packed code, number) of IDs whose item or version does not exist."""
    return driver_rows(conn, "SELECT a.version_id, a.item_id, a.code, a.disamb FROM assignments a "
                       "LEFT JOIN items i ON i.id = a.item_id LEFT JOIN versions v ON "
                       "v.id = a.version_id WHERE i.id IS NULL OR v.id IS NULL "
                       "ORDER BY a.version_id, a.item_id LIMIT ?", (limit,))


def bad_aliases(conn: Connection) -> list[tuple]:
    """(alias, version, state or None) of aliases that point at a missing version or at one
    that is not frozen."""
    return driver_rows(conn, "SELECT a.name, a.version_id, v.state FROM aliases a LEFT JOIN "
                       "versions v ON v.id = a.version_id WHERE v.id IS NULL OR "
                       "v.state <> 'frozen' ORDER BY a.name")


def id_counts(conn: Connection) -> dict[int, int]:
    return {r[0]: r[1] for r in driver_rows(conn, "SELECT version_id, COUNT(*) FROM assignments "
                                            "GROUP BY version_id")}
