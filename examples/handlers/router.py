"""A router: picks the next actors from the payload with SET .route.next.

payload["next"] (a list of actor names, or one name) replaces the rest of the route;
payload["prepend"] is put in front of it instead (a detour).
"""


async def route(payload):
    if "next" in payload:
        nxt = payload["next"]
        yield "SET", ".route.next", [nxt] if isinstance(nxt, str) else list(nxt)
    elif "prepend" in payload:
        extra = payload["prepend"]
        yield "SET", ".route.next[:0]", [extra] if isinstance(extra, str) else list(extra)
    current = yield "GET", ".route.next"
    yield "SET", ".headers.routed-by", "router"
    payload["routed_to"] = current
    yield payload
