"""sync runs record the id of the request that started them

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 04:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sync_runs", sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column("sync_runs", "request_id")
