"""Handlers for `asya dev` tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio


async def talk_then_hang(payload: Any) -> AsyncIterator[Any]:
    """One token, then silence (a slow model): the task outlives `asya dev --timeout`."""
    yield "FLY", {"partial": True, "text": "thinking"}
    await anyio.sleep_forever()
    yield payload
