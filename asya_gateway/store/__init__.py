"""Task stores: embedded SQLite (default) and PostgreSQL, chosen by a database URL."""

from __future__ import annotations

from .base import SCHEMA_VERSION, SchemaTooNew, StoreError, TaskExists, TaskStore, redact
from .sqlite import SqliteStore


def open_store(url: str) -> TaskStore:
    """The store for `url` (not yet opened); raises StoreError naming a bad URL."""
    if url.startswith("sqlite:"):
        return SqliteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore  # asyncpg only when PostgreSQL is used

        return PostgresStore(url)
    raise StoreError(
        f"database URL {redact(url)!r}: expected sqlite:///PATH or postgresql://USER@HOST/DB"
    )


__all__ = [
    "SCHEMA_VERSION",
    "SchemaTooNew",
    "SqliteStore",
    "StoreError",
    "TaskExists",
    "TaskStore",
    "open_store",
]
