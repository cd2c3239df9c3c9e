"""A covering index of each item's key and removal time by id: listing the items under an ID
prefix reads these from the index instead of one item row (with its embedding) per ID.

Revision ID: 0003_item_keys_index
Revises: 0002_live_items_index
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0003_item_keys_index"
down_revision = "0002_live_items_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_id_key_removed_at", "items", ["id", "key", "removed_at"])


def downgrade() -> None:
    op.drop_index("ix_items_id_key_removed_at", table_name="items")
