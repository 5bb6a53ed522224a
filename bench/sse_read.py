"""Reading a task's native SSE stream in the benches: FLY data out as it arrives, the terminal
update returned (one parser for every bench, on bytes: the client's cost is not the measure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import msgspec

TERMINAL = ("succeeded", "failed", "canceled")


async def read_flys(resp: httpx.Response, on_fly: Callable[[bytes], object]) -> dict[str, Any]:
    """Feed each FLY's data bytes to `on_fly`; return the terminal update."""
    buf = b""
    async for chunk in resp.aiter_bytes():
        buf += chunk
        *events, buf = buf.split(b"\n\n")
        for ev in events:
            lines = ev.split(b"\n")
            name = next((ln[7:] for ln in lines if ln.startswith(b"event: ")), b"")
            data = b"\n".join(ln[6:] for ln in lines if ln.startswith(b"data: "))
            if name == b"partial":
                on_fly(data)
            elif name == b"update":
                upd = msgspec.json.decode(data)
                if upd["status"] in TERMINAL:
                    return dict(upd)
    raise RuntimeError("stream closed without a terminal update")
