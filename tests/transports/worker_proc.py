"""A transport client in its own process, for crash and many-process tests.

Usage: python -m tests.transports.worker_proc '<json>' with keys `config` (TransportConfig
fields), `queue`, `mode`: `hold` (receive one, print `got <attempt>`, then sleep until killed),
`produce` (send `count` bodies `<tag>-<i>`, print `sent`) or `drain` (receive and ack until
`idle` seconds pass with nothing, printing each body).
"""

from __future__ import annotations

import json
import sys

import anyio

from asya_mesh.transports import TransportConfig, open_transport


async def main(spec: dict[str, object]) -> None:
    config = TransportConfig(**spec["config"])  # type: ignore[arg-type]
    queue = str(spec["queue"])
    transport = await open_transport(config, concurrency=4)
    try:
        if spec["mode"] == "hold":
            delivery = await transport.receive(queue, wait=30)
            assert delivery is not None
            print(f"got {delivery.attempt}", flush=True)
            await anyio.sleep_forever()
        elif spec["mode"] == "produce":
            for i in range(int(spec["count"])):  # type: ignore[call-overload]
                await transport.send(queue, f"{spec['tag']}-{i}".encode())
            print("sent", flush=True)
        elif spec["mode"] == "drain":
            while (d := await transport.receive(queue, wait=float(spec["idle"]))) is not None:  # type: ignore[arg-type]
                await d.ack()
                print(d.body.decode(), flush=True)
    finally:
        await transport.aclose()


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
