"""The queue layer's errors: every backend maps its client library's exceptions onto these.

AsyaError                     (asya_runtime.errors: the root of the project's tree)
 └── TransportError           a queue operation failed
      ├── MessageTooLarge      a message exceeds the transport's size limit (permanent)
      └── LeaseLost            ack/requeue/extend after the lease went to another consumer
"""

from __future__ import annotations

from asya_runtime.errors import AsyaError


class TransportError(AsyaError):
    """A queue transport operation failed."""


class MessageTooLarge(TransportError):
    """A message is larger than the transport accepts."""


class LeaseLost(TransportError):
    """`ack`/`requeue`/`extend` came after the lease lapsed and another consumer got the message."""


class QueueMissing(TransportError):
    """A send to a queue that no consuming sidecar has declared; names the queue."""


__all__ = ["LeaseLost", "MessageTooLarge", "QueueMissing", "TransportError"]
