"""The API key each upload belongs to (other keys cannot see or use it).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("uploads", sa.Column("owner_key_id", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("uploads", "owner_key_id")
