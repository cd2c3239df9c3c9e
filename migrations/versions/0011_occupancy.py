"""The code tuples each version has issued, one bit per tuple: assign reads this instead of
every issued code (see registry.store.occupancy). A cache, made again from the IDs whenever
it covers another count of them, so existing versions need nothing here.

Revision ID: 0011_occupancy
Revises: 0010_service
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_occupancy"
down_revision = "0010_service"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "occupancy",
        sa.Column("version_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ids", sa.BigInteger(), nullable=False),
        sa.Column("bits", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"],
                                name="fk_occupancy_version_id_versions"),
        sa.PrimaryKeyConstraint("version_id", name="pk_occupancy"),
    )


def downgrade() -> None:
    op.drop_table("occupancy")
