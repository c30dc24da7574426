"""Alembic revision scripts, applied in order by `skyops.opdb.engine.upgrade`."""
