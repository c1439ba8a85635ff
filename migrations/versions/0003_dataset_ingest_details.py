"""datasets.ingest (what the upload's reader detected), bad_row_count, schema_hints, values_rescued; bad_rows

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("datasets", sa.Column("ingest", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("datasets", sa.Column("bad_row_count", sa.Integer(), server_default="0", nullable=False))
    op.add_column("datasets", sa.Column("schema_hints", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("datasets", sa.Column("values_rescued", sa.BigInteger(), nullable=True))
    op.create_table(
        "bad_rows",
        sa.Column("dataset_id", sa.UUID(), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "line"),
    )


def downgrade() -> None:
    op.drop_table("bad_rows")
    op.drop_column("datasets", "values_rescued")
    op.drop_column("datasets", "schema_hints")
    op.drop_column("datasets", "bad_row_count")
    op.drop_column("datasets", "ingest")
