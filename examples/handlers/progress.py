"""Progress over a batch: one FLY per item, then the payload with the results."""

import asyncio

_DEFAULT_ITEMS = ["alpha", "beta", "gamma", "delta", "epsilon"]


async def batch(payload):
    items = payload.get("items") or _DEFAULT_ITEMS
    delay = payload.get("item_delay", 0.05)
    total = len(items)
    results = []
    for i, item in enumerate(items):
        yield (
            "FLY",
            {
                "type": "progress",
                "percent": int(i / total * 100),
                "current": i + 1,
                "total": total,
                "message": f"Processing item {i + 1}/{total}",
            },
        )
        await asyncio.sleep(delay)
        results.append(str(item).upper())
    yield (
        "FLY",
        {"type": "progress", "percent": 100, "current": total, "total": total, "message": "Done"},
    )
    payload["results"] = results
    yield payload
