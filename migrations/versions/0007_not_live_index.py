"""A partial index over the items that are not live (removed, or without an embedding):
assign checks that every live item up to a version's highest item id has an ID by counting,
and the IDs of items no longer live are counted through this index, which holds only them,
instead of through every item row.

Revision ID: 0007_not_live_index
Revises: 0006_covering_id_index
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_not_live_index"
down_revision = "0006_covering_id_index"
branch_labels = None
depends_on = None

NOT_LIVE = "removed_at IS NOT NULL OR embedding IS NULL"


def upgrade() -> None:
    op.create_index("ix_items_not_live", "items", ["id"],
                    sqlite_where=sa.text(NOT_LIVE), postgresql_where=sa.text(NOT_LIVE))


def downgrade() -> None:
    op.drop_index("ix_items_not_live", table_name="items")
