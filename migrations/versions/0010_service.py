"""What `registry serve` needs of the store: who made an event (the API token's name for
changes made through the service), and when an existing item was last touched (its
metadata, content or removal changed), indexed, so that a server finds what another process
changed with one index seek.

Revision ID: 0010_service
Revises: 0009_tokens
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_service"
down_revision = "0009_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("actor", sa.Text(), nullable=True))
    op.add_column("items", sa.Column("touched_at", sa.DateTime(timezone=True),
                                     nullable=True))
    op.create_index("ix_items_touched_at", "items", ["touched_at"])


def downgrade() -> None:
    op.drop_index("ix_items_touched_at", table_name="items")
    op.drop_column("items", "touched_at")
    op.drop_column("events", "actor")
