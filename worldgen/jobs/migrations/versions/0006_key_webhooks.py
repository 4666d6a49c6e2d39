"""A key's default webhook URL and its own signing secret.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("webhook_url", sa.Text(), nullable=True))
    op.add_column("api_keys", sa.Column("webhook_secret", sa.String(100), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "webhook_secret")
    op.drop_column("api_keys", "webhook_url")
