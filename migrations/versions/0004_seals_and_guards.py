"""Seals of frozen versions, and triggers that make the database itself refuse to change a
frozen or retired version: its codebooks, its issued IDs, its parameters, its seal.

Versions frozen before this revision are sealed here with what they hold now.

Revision ID: 0004_seals_and_guards
Revises: 0003_item_keys_index
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_seals_and_guards"
down_revision = "0003_item_keys_index"
branch_labels = None
depends_on = None

_NEVER = "{what} of a frozen or retired version never change"

# SQLite: one trigger per table and operation. `IS NOT 'draft'` is also true for a row
# whose version does not exist.
_SQLITE_GUARDS = {
    "guard_codebooks_insert": ("BEFORE INSERT ON codebooks", "NEW", "codebooks"),
    "guard_codebooks_update": ("BEFORE UPDATE ON codebooks", "OLD", "codebooks"),
    "guard_codebooks_delete": ("BEFORE DELETE ON codebooks", "OLD", "codebooks"),
    "guard_assignments_update": ("BEFORE UPDATE ON assignments", "OLD", "issued IDs"),
    "guard_assignments_delete": ("BEFORE DELETE ON assignments", "OLD", "issued IDs"),
}
_VERSION_CHANGES = ("NEW.state = 'draft' OR (OLD.state = 'retired' AND NEW.state IS NOT "
                    "'retired') OR NEW.id IS NOT OLD.id OR NEW.params IS NOT OLD.params OR "
                    "NEW.dim IS NOT OLD.dim OR NEW.embedding_model IS NOT OLD.embedding_model "
                    "OR NEW.frozen_at IS NOT OLD.frozen_at")
_SEAL_CHANGES = ("NEW.version_id IS NOT OLD.version_id OR NEW.codebooks_sha256 IS NOT "
                 "OLD.codebooks_sha256 OR NEW.frozen_count IS NOT OLD.frozen_count OR "
                 "NEW.frozen_digest IS NOT OLD.frozen_digest OR "
                 "NEW.grown_count < OLD.grown_count")

# json has no equality operator on PostgreSQL: compare the text
_PG_VERSION_CHANGES = _VERSION_CHANGES.replace(" IS NOT ", " IS DISTINCT FROM ").replace(
    "NEW.params IS DISTINCT FROM OLD.params", "NEW.params::text IS DISTINCT FROM OLD.params::text")

_PG_FUNCTIONS = f"""
CREATE FUNCTION registry_guard_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    vid integer;
    st text;
BEGIN
    IF TG_OP = 'INSERT' THEN vid := NEW.version_id; ELSE vid := OLD.version_id; END IF;
    SELECT state INTO st FROM versions WHERE id = vid;
    IF st IS DISTINCT FROM 'draft' THEN
        RAISE EXCEPTION 'the % of a frozen or retired version never change (version %)',
            TG_ARGV[0], vid;
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION registry_guard_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM versions WHERE state <> 'draft') THEN
        RAISE EXCEPTION 'the % of frozen or retired versions never change', TG_ARGV[0];
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION registry_guard_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state <> 'draft' THEN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'a frozen or retired version is never deleted (version %)', OLD.id;
        END IF;
        IF {_PG_VERSION_CHANGES} THEN
            RAISE EXCEPTION 'a frozen or retired version''s parameters never change (version %)',
                OLD.id;
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION registry_guard_seals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR {_SEAL_CHANGES.replace(" IS NOT ", " IS DISTINCT FROM ")} THEN
        RAISE EXCEPTION 'a version''s seal is never rewritten (version %)', OLD.version_id;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER guard_codebooks BEFORE INSERT OR UPDATE OR DELETE ON codebooks
    FOR EACH ROW EXECUTE FUNCTION registry_guard_frozen('codebooks');
CREATE TRIGGER guard_assignments BEFORE UPDATE OR DELETE ON assignments
    FOR EACH ROW EXECUTE FUNCTION registry_guard_frozen('issued IDs');
CREATE TRIGGER guard_codebooks_truncate BEFORE TRUNCATE ON codebooks
    FOR EACH STATEMENT EXECUTE FUNCTION registry_guard_truncate('codebooks');
CREATE TRIGGER guard_assignments_truncate BEFORE TRUNCATE ON assignments
    FOR EACH STATEMENT EXECUTE FUNCTION registry_guard_truncate('issued IDs');
CREATE TRIGGER guard_versions BEFORE UPDATE OR DELETE ON versions
    FOR EACH ROW EXECUTE FUNCTION registry_guard_versions();
CREATE TRIGGER guard_seals BEFORE UPDATE OR DELETE ON seals
    FOR EACH ROW EXECUTE FUNCTION registry_guard_seals();
"""
_PG_DROP = """
DROP TRIGGER guard_codebooks ON codebooks;
DROP TRIGGER guard_assignments ON assignments;
DROP TRIGGER guard_codebooks_truncate ON codebooks;
DROP TRIGGER guard_assignments_truncate ON assignments;
DROP TRIGGER guard_versions ON versions;
DROP TRIGGER guard_seals ON seals;
DROP FUNCTION registry_guard_frozen();
DROP FUNCTION registry_guard_truncate();
DROP FUNCTION registry_guard_versions();
DROP FUNCTION registry_guard_seals();
"""


def _sqlite_guards() -> list[str]:
    out = []
    for name, (when, row, what) in _SQLITE_GUARDS.items():
        out.append(f"CREATE TRIGGER {name} {when} WHEN (SELECT state FROM versions WHERE "
                   f"id = {row}.version_id) IS NOT 'draft' BEGIN SELECT RAISE(ABORT, "
                   f"'{_NEVER.format(what=what)}'); END")
    out.append("CREATE TRIGGER guard_versions_update BEFORE UPDATE ON versions WHEN "
               f"OLD.state IS NOT 'draft' AND ({_VERSION_CHANGES}) BEGIN SELECT RAISE(ABORT, "
               "'a frozen or retired version''s parameters never change'); END")
    out.append("CREATE TRIGGER guard_versions_delete BEFORE DELETE ON versions WHEN "
               "OLD.state IS NOT 'draft' BEGIN SELECT RAISE(ABORT, 'a frozen or retired "
               "version is never deleted'); END")
    out.append(f"CREATE TRIGGER guard_seals_update BEFORE UPDATE ON seals WHEN {_SEAL_CHANGES} "
               "BEGIN SELECT RAISE(ABORT, 'a version''s seal is never rewritten'); END")
    out.append("CREATE TRIGGER guard_seals_delete BEFORE DELETE ON seals BEGIN SELECT "
               "RAISE(ABORT, 'a version''s seal is never rewritten'); END")
    return out


def _run(conn, statements: list[str]) -> None:
    # through the driver without parameters: the bodies hold % and : that a parameter
    # style would take for placeholders
    cur = conn.connection.cursor()
    try:
        for statement in statements:
            cur.execute(statement)
    finally:
        cur.close()


def upgrade() -> None:
    op.create_table(
        "seals",
        sa.Column("version_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("codebooks_sha256", sa.String(length=64), nullable=False),
        sa.Column("frozen_count", sa.BigInteger(), nullable=False),
        sa.Column("frozen_digest", sa.BigInteger(), nullable=False),
        sa.Column("grown_count", sa.BigInteger(), nullable=False),
        sa.Column("grown_digest", sa.BigInteger(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"],
                                name="fk_seals_version_id_versions"),
        sa.PrimaryKeyConstraint("version_id", name="pk_seals"),
    )
    conn = op.get_bind()
    from registry.store import db, seals

    frozen = conn.execute(sa.text("SELECT id FROM versions WHERE state <> 'draft' "
                                  "ORDER BY id")).scalars().all()
    for number in frozen:
        seals.seal(conn, number, db.now())
    _run(conn, [_PG_FUNCTIONS] if conn.dialect.name == "postgresql" else _sqlite_guards())


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        _run(conn, [_PG_DROP])
    else:
        _run(conn, [f"DROP TRIGGER {name}" for name in [
            *_SQLITE_GUARDS, "guard_versions_update", "guard_versions_delete",
            "guard_seals_update", "guard_seals_delete"]])
    op.drop_table("seals")
