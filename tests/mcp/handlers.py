"""Handlers for the MCP end-to-end tests (imported by real runtimes as tests.mcp.handlers:NAME)."""

import asyncio
from pathlib import Path


async def fly_then_hang(payload):
    """One FLY (so the caller knows the handler runs), then await forever; on cancellation the
    `finally` writes the file payload["marker"]."""
    try:
        yield "FLY", {"partial": True, "text": "started"}
        await asyncio.Event().wait()
    finally:
        marker = payload.get("marker")
        if marker:
            Path(marker).write_text("finally ran\n")  # noqa: ASYNC240 - sync: we are being cancelled
