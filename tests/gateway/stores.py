"""Test stores: a fresh SQLite file, or a fresh PostgreSQL database (skipped without one)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

BACKENDS = ["sqlite", "postgres"]


def _admin_url() -> str | None:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    try:
        out = subprocess.run(
            ["bash", "/work/shared/tools/services.sh", "env", "postgres"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.startswith("export DATABASE_URL="):
            return line.split("=", 1)[1].strip()
    return None


@asynccontextmanager
async def database_url(kind: str, tmp: str) -> AsyncIterator[str]:
    """A URL to an empty store of `kind`, dropped afterwards (PostgreSQL)."""
    if kind == "sqlite":
        yield f"sqlite://{tmp}/gateway-{uuid.uuid4().hex[:8]}.db"
        return
    admin = _admin_url()
    if admin is None:
        pytest.skip("no PostgreSQL: set DATABASE_URL")
    import asyncpg

    name = f"asya_t_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(admin)
    except OSError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        await conn.execute(f"CREATE DATABASE {name}")
        base = admin.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()


__all__ = ["BACKENDS", "database_url"]
