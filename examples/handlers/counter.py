"""A stateful class handler: built once with no arguments, state shared across messages."""


class Counter:
    def __init__(self):
        self.count = 0

    async def handle(self, payload):
        self.count += 1
        payload["count"] = self.count
        return payload
