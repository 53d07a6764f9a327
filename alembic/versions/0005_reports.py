"""reports: which scheduled report was sent for which period, claimed once among processes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import monitor.store.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_sent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("due_at", monitor.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("period_start", monitor.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("claimed_at", monitor.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report", "due_at", name="uq_report_sent_report_due"),
    )


def downgrade() -> None:
    op.drop_table("report_sent")
