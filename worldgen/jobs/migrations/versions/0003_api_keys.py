"""API keys (stored as SHA-256), and the key each world belongs to.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from worldgen.jobs.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.add_column("jobs", sa.Column("owner_key_id", sa.String(32), nullable=True))
    op.create_index("ix_jobs_owner_key_id", "jobs", ["owner_key_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_owner_key_id", "jobs")
    op.drop_column("jobs", "owner_key_id")
    op.drop_table("api_keys")
