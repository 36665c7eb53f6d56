"""Alembic migrations: the only source of tracker's schema."""
