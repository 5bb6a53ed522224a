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


async def verify_store(url: str) -> None:
    """Open and close the store at `url` (creating or migrating its schema): the CLI calls it
    before serving, so a bad URL or a too-new schema stops the gateway with one line."""
    store = open_store(url)
    await store.open()
    await store.aclose()


__all__ = [
    "SCHEMA_VERSION",
    "SchemaTooNew",
    "SqliteStore",
    "StoreError",
    "TaskExists",
    "TaskStore",
    "open_store",
    "verify_store",
]
