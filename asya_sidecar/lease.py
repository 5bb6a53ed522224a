"""The lease keeper: extends the lease of a worker's current message while its handler runs."""

from __future__ import annotations

import anyio
import structlog

from asya_mesh.transports import Delivery, LeaseLost

log = structlog.get_logger("asya.sidecar")


class LeaseKeeper:
    """Extends the lease of the worker's current message every lease/3 seconds, so a long
    handler is not redelivered. One per worker (not per envelope: no task spawn on the hot
    path); an extension racing with the ack is harmless and only logged."""

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.delivery: Delivery | None = None
        self.ticks = 0  # periods elapsed (tests wait on it instead of sleeping)
        self._lost: Delivery | None = None  # lease went to another consumer: stop extending

    async def run(self) -> None:
        while True:
            await anyio.sleep(max(self.lease / 3, 0.05))
            self.ticks += 1
            d = self.delivery
            if d is None or d is self._lost:
                continue
            try:
                await d.extend(self.lease)
            except LeaseLost as exc:
                self._lost = d
                log.warning(
                    "lease lost: another consumer has this message now; no longer extending",
                    message_id=d.message_id,
                    error=str(exc),
                )
            except Exception as exc:
                log.debug("lease extension failed", error=repr(exc))


__all__ = ["LeaseKeeper"]
