"""A handler that raises ValueError, optionally after a FLY (payload["fly_first"])."""


async def explode(payload):
    if payload.get("fly_first"):
        yield "FLY", {"type": "status", "message": "about to fail"}
    raise ValueError(payload.get("message", "boom"))
    yield  # pragma: no cover - makes this an async generator
