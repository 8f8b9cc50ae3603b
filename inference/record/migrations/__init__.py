"""Alembic migrations of the patient record (run by ``Record.migrate()``)."""
