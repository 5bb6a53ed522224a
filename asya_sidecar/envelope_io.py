"""The envelope machine's inputs (events: what happened) and outputs (actions: what to do),
as frozen Structs. Pure data; `envelope.py` documents which action each event answers."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from asya_mesh.events import Event, StatusEvent
from asya_runtime.wire import Envelope, RuntimeFrame

from .routing import Outgoing

# -- events -----------------------------------------------------------------------------------


class Delivered(msgspec.Struct, frozen=True):
    body: bytes
    attempt: int = 1


class PreflightAnswered(msgspec.Struct, frozen=True):
    status: str | None  # the task's status at the gateway; None = unknown (carry on)


class FrameArrived(msgspec.Struct, frozen=True):
    frame: RuntimeFrame


class TimedOut(msgspec.Struct, frozen=True):
    pass


class RuntimeGone(msgspec.Struct, frozen=True):
    reason: str


class InvokeFailed(msgspec.Struct, frozen=True):
    """The `invoke` never reached the runtime (it was closing): nothing started."""

    reason: str


class CancelDone(msgspec.Struct, frozen=True):
    ended: bool  # the runtime answered `end` within the grace (False: it hangs)


class Sent(msgspec.Struct, frozen=True):
    pass


class SendFailed(msgspec.Struct, frozen=True):
    error: str
    too_large: bool = False  # permanent: the output can never be sent
    lease_lost: bool = False  # another consumer has the message now
    missing: bool = False  # a `must_exist` send found no queue (`QueueMissing`): permanent


class PauseStored(msgspec.Struct, frozen=True):
    """The gateway's answer to a `ReportPause`: True once it stored the paused envelope."""

    ok: bool


class Cancelled(msgspec.Struct, frozen=True):
    """The gateway says the task ended (canceled/failed) or paused while it runs here."""

    status: str


class Shutdown(msgspec.Struct, frozen=True):
    """The shutdown grace is over: give the message back untouched."""


EnvelopeEvent = (
    Delivered
    | PreflightAnswered
    | FrameArrived
    | TimedOut
    | RuntimeGone
    | InvokeFailed
    | CancelDone
    | Sent
    | SendFailed
    | PauseStored
    | Cancelled
    | Shutdown
)

# -- actions ----------------------------------------------------------------------------------


class Preflight(msgspec.Struct, frozen=True):
    gateway: str
    envelope_id: str


class StartInvoke(msgspec.Struct, frozen=True):
    envelope: Envelope
    timeout: float


class Send(msgspec.Struct, frozen=True):
    out: Outgoing
    must_exist: bool = False  # a next actor's queue: refuse (`SendFailed(missing=True)`) if none


class SendWithAck(msgspec.Struct, frozen=True):
    """Send the last output and ack the input in one call (`Transport.send_then_ack`)."""

    out: Outgoing
    must_exist: bool = False


class Ack(msgspec.Struct, frozen=True):
    pass


class Requeue(msgspec.Struct, frozen=True):
    delay: float


class CancelInvocation(msgspec.Struct, frozen=True):
    """Send `cancel` and drain to `end` within the cancel grace (else drop the connection)."""


class Report(msgspec.Struct, frozen=True):
    event: Event


class ReportPause(msgspec.Struct, frozen=True):
    """POST the `paused` status (with the envelope to resume) now, awaited, with retries."""

    gateway: str
    envelope_id: str
    event: StatusEvent


class Count(msgspec.Struct, frozen=True):
    metric: Literal["failed", "processed", "runtime_errors"]
    label: str


class Log(msgspec.Struct, frozen=True):
    level: Literal["debug", "info", "warning", "error"]
    message: str
    fields: dict[str, Any] = {}


class Fatal(msgspec.Struct, frozen=True):
    """The sidecar must report unhealthy and exit non-zero once this envelope is settled."""

    message: str


Action = (
    Preflight
    | StartInvoke
    | Send
    | SendWithAck
    | Ack
    | Requeue
    | CancelInvocation
    | Report
    | ReportPause
    | Count
    | Log
    | Fatal
)


__all__ = [
    "Ack",
    "Action",
    "CancelDone",
    "CancelInvocation",
    "Cancelled",
    "Count",
    "Delivered",
    "EnvelopeEvent",
    "Fatal",
    "FrameArrived",
    "InvokeFailed",
    "Log",
    "PauseStored",
    "Preflight",
    "PreflightAnswered",
    "Report",
    "ReportPause",
    "Requeue",
    "RuntimeGone",
    "Send",
    "SendFailed",
    "SendWithAck",
    "Sent",
    "Shutdown",
    "StartInvoke",
    "TimedOut",
]
