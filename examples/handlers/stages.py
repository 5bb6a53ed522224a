"""Multi-stage status: a FLY per stage with short delays; the payload passes through."""

import asyncio

_STAGES = [
    ("download", "Downloading data..."),
    ("validate", "Validating schema..."),
    ("transform", "Transforming data..."),
    ("save", "Saving results..."),
]


async def pipeline(payload):
    delay = payload.get("stage_delay", 0.1)
    done = []
    for name, message in _STAGES:
        yield "FLY", {"stage": name, "message": message}
        await asyncio.sleep(delay)
        done.append(name)
    payload["stages"] = done
    yield payload
