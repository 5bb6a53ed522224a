"""One task's A2A view, folded from its mesh updates: the events to stream and the Task to show.

Pure and synchronous: `TaskA2A.apply(update)` returns the A2A events that update means (the
mapping table of front-doors.md) and folds them into the view (status, history, artifacts with
their chunks appended, the result), bounded in bytes (past the bound: `metadata.truncated`).
The rules the wild gets wrong live here: the first chunk of an artifact id is `append: false`,
each artifact gets exactly one `lastChunk`, nothing follows a terminal state.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from asya_gateway.service import FlyUpdate, StatusUpdate, TaskUpdate, TaskView

from .model import (
    FINAL_STATES,
    TERMINAL_STATES,
    A2AArtifactUpdate,
    A2AEvent,
    A2AStatusUpdate,
    Artifact,
    Status,
    TaskSnapshot,
)
from .translate import RESULT_ARTIFACT, STREAM_ARTIFACT, ArtifactFly, a2a_of, read_fly

DEFAULT_MAX_BYTES: Final = 1 << 20
#: FLY keys `read_fly` may read as something other than a text chunk.
_TYPED_KEYS: Final = frozenset(
    {"artifact_update", "artifactUpdate", "status_update", "statusUpdate", "message"}
)
_PART_OVERHEAD: Final = 32  # charged per stored chunk, so a flood of empty chunks is bounded too
_json: Final = msgspec.json.Encoder()


def error_text(view: TaskView) -> str:
    """The failure as one line: the error's message (and type), else the task's message."""
    err = view.error
    if isinstance(err, dict):
        msg = err.get("message") or err.get("error") or ""
        kind = err.get("type")
        text = f"{kind}: {msg}" if kind and msg else str(msg or kind or "")
    elif isinstance(err, str):
        text = err
    else:
        text = ""
    return text or view.message or "the task failed"


def _size(part: dict[str, Any]) -> int:
    if "text" in part:
        return len(part["text"]) + _PART_OVERHEAD
    return len(_json.encode(part)) + _PART_OVERHEAD


class _Acc:
    """An artifact as the view holds it (its parts so far) and as the stream has shown it.

    Consecutive plain text chunks are kept as one run of pieces (`run`, joined when a Task is
    shown), so a long stream costs linear time, not a string copy per token."""

    __slots__ = ("artifact", "run", "sealed")

    def __init__(self, artifact_id: str, name: str) -> None:
        self.artifact = Artifact(artifact_id=artifact_id, parts=[], name=name)
        self.run: list[str] | None = None  # the trailing text part's pieces, when it is text
        self.sealed = False

    def parts(self) -> list[dict[str, Any]]:
        parts = list(self.artifact.parts)
        if self.run is not None:
            parts[-1] = {"text": "".join(self.run)}
        return parts


class TaskA2A:
    """The A2A side of one mesh task."""

    fast_text = True  # False: every FLY takes the general path (tests compare the two)

    def __init__(
        self,
        task_id: str,
        context_id: str,
        history: list[dict[str, Any]] | None = None,
        *,
        created_at: str = "",
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.task_id = task_id
        self.context_id = context_id
        self.history = list(history or [])
        self.status = Status(state="SUBMITTED", timestamp=created_at)
        self.mesh_status = "pending"
        self.artifacts: dict[str, _Acc] = {}
        self.result: Any = msgspec.UNSET
        self.max_bytes = max_bytes
        self.size = 0
        self.truncated = False
        self.last_event_id = 0

    @classmethod
    def for_view(cls, view: TaskView, *, max_bytes: int = DEFAULT_MAX_BYTES) -> TaskA2A:
        """A fresh fold for a task: id, context and history from `payload.a2a.task`."""
        ctx, history = a2a_of(view.payload)
        return cls(
            view.id, ctx or view.id, history, created_at=view.created_at, max_bytes=max_bytes
        )

    @property
    def final(self) -> bool:
        """A stream of this task is over (terminal or interrupted)."""
        return self.status.state in FINAL_STATES

    @property
    def terminal(self) -> bool:
        return self.status.state in TERMINAL_STATES

    def mark_truncated(self) -> None:
        """Some of the task's events are gone (the replay window moved past them)."""
        self.truncated = True

    # -- the fold ---------------------------------------------------------------------------

    def apply(self, update: TaskUpdate) -> list[A2AEvent]:
        """The A2A events `update` means (possibly none), folded into the view."""
        if self.terminal:
            return []  # nothing follows a terminal state
        eid = update.event_id
        if eid:  # 0: a state the door learned directly (a cancel's or resume's answer)
            if self.last_event_id and eid > self.last_event_id + 1:
                self.truncated = True  # event ids are dense: some events never reached us
            self.last_event_id = max(self.last_event_id, eid)
        if isinstance(update, FlyUpdate):
            return self._fly(update)
        return self._status(update)

    def _set_status(self, state: str, message: dict[str, Any] | None, ts: str) -> A2AStatusUpdate:
        self.status = Status(state=state, message=message, timestamp=ts)
        return A2AStatusUpdate(task_id=self.task_id, context_id=self.context_id, status=self.status)

    def _status(self, update: StatusUpdate) -> list[A2AEvent]:
        t = update.task
        prev, self.mesh_status = self.mesh_status, t.status
        ts = t.updated_at
        if t.status == "running":
            if prev == "running" and self.status.state == "WORKING":
                return []  # progress: the state did not change
            return [self._set_status("WORKING", None, ts)]
        if t.status == "paused":
            if prev == "paused" and self.status.state == "INPUT_REQUIRED":
                return []
            return [self._set_status("INPUT_REQUIRED", self._pause_message(t, update), ts)]
        if t.status == "succeeded":
            out: list[A2AEvent] = self._seal_all()
            if t.result is not msgspec.UNSET:
                self.result = t.result
                out.append(self._chunk(RESULT_ARTIFACT, "result", [{"data": t.result}], last=True))
            out.append(self._set_status("COMPLETED", None, ts))
            return out
        if t.status == "failed":
            out = self._seal_all()
            msg = self._agent_message(update.event_id, [{"text": error_text(t)}])
            out.append(self._set_status("FAILED", msg, ts))
            return out
        if t.status == "canceled":
            return [self._set_status("CANCELED", None, ts)]
        return []  # pending (or a status this door does not know): no event

    def _agent_message(self, event_id: int, parts: list[dict[str, Any]]) -> dict[str, Any]:
        # Deterministic ids: every subscriber, and every replay, sees the same message.
        return {
            "messageId": f"{self.task_id}-{event_id}",
            "role": "agent",
            "parts": parts,
            "taskId": self.task_id,
            "contextId": self.context_id,
        }

    def _pause_message(self, t: TaskView, update: StatusUpdate) -> dict[str, Any]:
        pause = t.pause or {}
        parts: list[dict[str, Any]] = []
        if isinstance(pause.get("prompt"), str):
            parts.append({"text": pause["prompt"]})
        parts.append({"data": pause})
        return self._agent_message(update.event_id, parts)

    def _fly(self, update: FlyUpdate) -> list[A2AEvent]:
        if self.fast_text:
            ev = self._text_chunk(update.data)
            if ev is not None:
                return [ev]
        out: list[A2AEvent] = []
        if self.status.state in ("SUBMITTED", "INPUT_REQUIRED"):
            # a FLY means the task runs, even if its `running` report has not arrived yet
            self.mesh_status = "running"
            out.append(self._set_status("WORKING", None, ""))
        effect = read_fly(update.data)
        if isinstance(effect, ArtifactFly):
            ev = self._artifact_fly(effect)
            if ev is not None:
                out.append(ev)
            return out
        msg = effect.message
        if msg is not None:
            msg = {**msg, "messageId": f"{self.task_id}-{update.event_id}"}
            msg.update(taskId=self.task_id, contextId=self.context_id)
        ev_status = self._set_status("WORKING", msg, "")
        if effect.metadata:
            ev_status = A2AStatusUpdate(
                task_id=self.task_id,
                context_id=self.context_id,
                status=self.status,
                metadata=effect.metadata,
            )
        out.append(ev_status)
        return out

    def _text_chunk(self, data: dict[str, Any]) -> A2AArtifactUpdate | None:
        """The hot case in one step: a plain text FLY extending the open text run of the
        `stream` artifact while WORKING (what `read_fly` + `_chunk` + `_store` would do, without
        their intermediate objects); None for anything else, which takes the general path."""
        text = data.get("text")
        if type(text) is not str or self.status.state != "WORKING":
            return None
        acc = self.artifacts.get(STREAM_ARTIFACT)
        if acc is None or acc.run is None or acc.sealed or not _TYPED_KEYS.isdisjoint(data):
            return None
        if self.size + len(text) + _PART_OVERHEAD > self.max_bytes:
            self.truncated = True  # streamed live, not kept (as `_store`)
        else:
            self.size += len(text)
            acc.run.append(text)
        shown = Artifact(
            artifact_id=STREAM_ARTIFACT, parts=[{"text": text}], name=acc.artifact.name
        )
        return A2AArtifactUpdate(
            task_id=self.task_id, context_id=self.context_id, artifact=shown, append=True
        )

    def _artifact_fly(self, fly: ArtifactFly) -> A2AArtifactUpdate | None:
        acc = self.artifacts.get(fly.artifact_id)
        if acc is not None and acc.sealed:
            return None  # an artifact sealed with `lastChunk` takes no more chunks
        return self._chunk(
            fly.artifact_id,
            fly.name,
            fly.parts,
            last=fly.last_chunk,
            append=fly.append is not False,
        )

    def _chunk(
        self,
        artifact_id: str,
        name: str,
        parts: list[dict[str, Any]],
        *,
        last: bool,
        append: bool = True,
    ) -> A2AArtifactUpdate:
        acc = self.artifacts.get(artifact_id)
        if acc is None:
            acc = self.artifacts[artifact_id] = _Acc(artifact_id, name)
            append = False  # the first chunk of an id always creates it
        elif not append:
            self._replace(acc)
        self._store(acc, parts)
        acc.sealed = last
        shown = Artifact(artifact_id=artifact_id, parts=parts, name=acc.artifact.name)
        return A2AArtifactUpdate(
            task_id=self.task_id,
            context_id=self.context_id,
            artifact=shown,
            append=append,
            last_chunk=last,
        )

    def _replace(self, acc: _Acc) -> None:
        self.size -= sum(_size(p) for p in acc.parts())
        acc.artifact.parts = []
        acc.run = None

    def _store(self, acc: _Acc, parts: list[dict[str, Any]]) -> None:
        stored = acc.artifact.parts
        for p in parts:
            n = _size(p)
            if self.size + n > self.max_bytes:
                self.truncated = True  # streamed live, not kept: GetTask says so
                continue
            if "text" in p and len(p) == 1:
                self.size += n - (_PART_OVERHEAD if acc.run is not None else 0)
                if acc.run is not None:
                    acc.run.append(p["text"])  # one text part, not N
                else:
                    acc.run = [p["text"]]
                    stored.append(p)
            else:
                self.size += n
                if acc.run is not None:  # the text run ends here: keep it as one part
                    stored[-1] = {"text": "".join(acc.run)}
                    acc.run = None
                stored.append(p)

    def _seal_all(self) -> list[A2AEvent]:
        out: list[A2AEvent] = []
        for acc in self.artifacts.values():
            if not acc.sealed:
                out.append(self._chunk(acc.artifact.artifact_id, "", [], last=True))
        return out

    # -- the view ---------------------------------------------------------------------------

    def snapshot(self) -> TaskSnapshot:
        """The Task as GetTask and the first event of a subscription show it."""
        arts = [
            Artifact(artifact_id=a.artifact.artifact_id, parts=a.parts(), name=a.artifact.name)
            for a in self.artifacts.values()
        ]
        return TaskSnapshot(
            id=self.task_id,
            context_id=self.context_id,
            status=self.status,
            artifacts=arts,
            history=self.history,
            metadata={"truncated": True} if self.truncated else None,
        )


__all__ = ["DEFAULT_MAX_BYTES", "TaskA2A", "error_text"]
