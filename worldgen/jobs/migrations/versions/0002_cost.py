"""A world's cost (instance, price, startup share, loads, compute), from its manifest.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("cost", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "cost")
