"""The bytes of one A2A stream's events: SSE `data:` events of JSON-RPC results (pure).

`StreamWire.encode(ev)` gives exactly `sse_data(result_bytes(id, render(ev, version)))`. The
artifact update, the event a token stream is made of, is joined from byte pieces cached per
stream and per artifact id (the JSON-RPC head, the task and context ids, the closing flags), so
per event only its parts are encoded: no result dicts are built. Every other event, and an
artifact update the templates do not cover (a description or metadata, another task's ids),
goes through `render`.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .model import A2AArtifactUpdate, A2AEvent, Version, part_v03, render
from .rpc import RequestId, result_bytes
from .stream import sse_data

_enc: Final = msgspec.json.Encoder()
_B: Final = {False: b"false", True: b"true"}


class StreamWire:
    """The encoder of one stream (one request id, one dialect, one task)."""

    __slots__ = ("_art", "_heads", "_tails", "context_id", "request_id", "task_id", "version")

    def __init__(
        self, request_id: RequestId, version: Version, task_id: str, context_id: str
    ) -> None:
        self.request_id = request_id
        self.version: Version = version
        self.task_id = task_id
        self.context_id = context_id
        ids = b'"taskId":' + _enc.encode(task_id) + b',"contextId":' + _enc.encode(context_id)
        head = b'data: {"jsonrpc":"2.0","id":' + _enc.encode(request_id) + b',"result":{'
        if version == "1.0":
            self._art = head + b'"artifactUpdate":{' + ids + b',"artifact":{"artifactId":'
            close = b"}}}\n\n"
        else:
            self._art = head + b'"kind":"artifact-update",' + ids + b',"artifact":{"artifactId":'
            close = b"}}\n\n"
        self._tails = {
            (a, last): b',"append":' + _B[a] + b',"lastChunk":' + _B[last] + close
            for a in (False, True)
            for last in (False, True)
        }
        self._heads: dict[str, bytes] = {}  # artifact id → everything up to its parts

    def encode(self, ev: A2AEvent) -> bytes:
        """One SSE event holding `ev` as this stream's JSON-RPC result."""
        if (
            isinstance(ev, A2AArtifactUpdate)
            and not ev.artifact.description
            and not ev.artifact.metadata
            and ev.task_id == self.task_id
            and ev.context_id == self.context_id
        ):
            return self._artifact(ev)
        return sse_data(result_bytes(self.request_id, render(ev, self.version)))

    def encode_all(self, events: list[A2AEvent]) -> bytes:
        if len(events) == 1:
            return self.encode(events[0])
        return b"".join([self.encode(ev) for ev in events])

    def _artifact(self, ev: A2AArtifactUpdate) -> bytes:
        a = ev.artifact
        head = self._heads.get(a.artifact_id)
        if head is None:
            head = self._heads[a.artifact_id] = (
                self._art + _enc.encode(a.artifact_id) + b',"parts":'
            )
        parts: list[dict[str, Any]] = (
            a.parts if self.version == "1.0" else [part_v03(p) for p in a.parts]
        )
        name = b',"name":' + _enc.encode(a.name) + b"}" if a.name else b"}"
        return b"".join((head, _enc.encode(parts), name, self._tails[ev.append, ev.last_chunk]))


__all__ = ["StreamWire"]
