"""A fan-out splitter: one emit per item of payload["items"]."""


async def split(payload):
    items = payload.get("items", [])
    for i, item in enumerate(items):
        yield {"item": item, "index": i, "count": len(items)}
