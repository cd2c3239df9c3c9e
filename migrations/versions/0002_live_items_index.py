"""A partial index over the live items' embedding space: finding the space of a catalog of
millions (every train, add and assign asks) becomes two index seeks instead of a scan of
every item row with its embedding.

Revision ID: 0002_live_items_index
Revises: 0001_initial
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_live_items_index"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

LIVE = "removed_at IS NULL AND embedding IS NOT NULL"


def upgrade() -> None:
    op.create_index("ix_items_live_space", "items", ["embedding_model", "embedding_dim", "id"],
                    sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))


def downgrade() -> None:
    op.drop_index("ix_items_live_space", table_name="items")
