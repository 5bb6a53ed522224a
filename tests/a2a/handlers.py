"""One handler for the A2A end-to-end tests; the payload says what to do (a flow of one actor)."""

import asyncio


async def act(payload):
    if payload.get("fail"):
        yield "FLY", {"partial": True, "text": "about to fail"}
        raise ValueError(payload["fail"])
    if payload.get("silence"):
        await asyncio.sleep(float(payload["silence"]))  # longer than the client's read timeout
        yield "FLY", {"partial": True, "text": "after the silence"}
    if payload.get("pause") and "approved" not in payload:
        yield "SET", ".headers.x-asya-pause", {"prompt": "Approve?"}
        yield {**payload, "approved": None}
        return
    words = str(payload.get("query", "")).split()
    delay = float(payload.get("token_delay", 0.02))
    for i, word in enumerate(words):
        await asyncio.sleep(delay)
        yield "FLY", {"partial": True, "text": word if i == 0 else " " + word}
    yield {**payload, "text": " ".join(words)}
