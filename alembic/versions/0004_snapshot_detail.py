"""snapshot detail: equity points say whether their poll's balances and positions were stored

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every earlier poll stored its balances and positions: existing points are all detailed.
    with op.batch_alter_table("equity_point") as batch_op:
        batch_op.add_column(sa.Column("detail", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("equity_point") as batch_op:
        batch_op.drop_column("detail")
