"""Storage: SQLModel tables, Alembic migrations, the repository and the buffered writer.

Nothing outside this package imports SQLAlchemy; the database URL alone decides SQLite or PostgreSQL.
"""
