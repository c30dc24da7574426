"""Alembic migrations of the operational database (a package so that installs ship them)."""
