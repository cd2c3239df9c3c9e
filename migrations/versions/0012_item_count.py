"""PostgreSQL: how many item rows there are, kept by triggers on the items table. Assign
checks that every live item up to a version's highest item id has an ID by counting the
live items up to it; with this count that is the rows above that id (the new ones) less the
few not live, not a walk over every item (see registry.store.items.assigned_through). One
row, added to by a statement trigger over the rows each statement inserted or deleted:
writers of new items queue on an advisory lock already (items.lock_inserts), so the row
adds no wait of its own. The functions keep the search path they were made with, so that a
writer with another one counts this schema's items here.

SQLite needs none: its item ids are dense (AUTOINCREMENT, items are never deleted), so the
rows up to an id are known from the first id; a row trigger that kept a count there doubled
the time of an add.

Revision ID: 0012_item_count
Revises: 0011_occupancy
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_item_count"
down_revision = "0011_occupancy"
branch_labels = None
depends_on = None

_PG_UP = [
    """CREATE FUNCTION registry_count_added() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        UPDATE item_count SET items = items + (SELECT count(*) FROM added);
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION registry_count_gone() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        UPDATE item_count SET items = items - (SELECT count(*) FROM gone);
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION registry_refuse_truncate_items() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'items are tombstoned, never truncated';
    END $$""",
    "CREATE TRIGGER count_items_insert AFTER INSERT ON items REFERENCING NEW TABLE AS added "
    "FOR EACH STATEMENT EXECUTE FUNCTION registry_count_added()",
    "CREATE TRIGGER count_items_delete AFTER DELETE ON items REFERENCING OLD TABLE AS gone "
    "FOR EACH STATEMENT EXECUTE FUNCTION registry_count_gone()",
    "CREATE TRIGGER count_items_truncate BEFORE TRUNCATE ON items "
    "FOR EACH STATEMENT EXECUTE FUNCTION registry_refuse_truncate_items()",
]
_PG_DOWN = [
    "DROP TRIGGER count_items_insert ON items",
    "DROP TRIGGER count_items_delete ON items",
    "DROP TRIGGER count_items_truncate ON items",
    "DROP FUNCTION registry_count_added()",
    "DROP FUNCTION registry_count_gone()",
    "DROP FUNCTION registry_refuse_truncate_items()",
]


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    op.create_table(
        "item_count",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("items", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_item_count"),
    )
    # no writer of items between the count and the triggers: none uncounted, none twice
    conn.exec_driver_sql("LOCK TABLE items IN SHARE MODE")
    conn.execute(sa.text("INSERT INTO item_count (items) SELECT count(*) FROM items"))
    for statement in _PG_UP:
        conn.exec_driver_sql(statement)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for statement in _PG_DOWN:
        conn.exec_driver_sql(statement)
    op.drop_table("item_count")
