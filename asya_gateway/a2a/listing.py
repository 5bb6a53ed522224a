"""`ListTasks`: the A2A tasks of the service's durable listing, one page at a time.

The service lists every task the caller may see, newest first; this keeps those created through
the A2A door (their payload carries `a2a.task.context_id`), filters them (contextId, status,
statusTimestampAfter) and pages with an opaque token: base64url of `[created_at, id, listed]`,
the position after the page's last task and how many tasks earlier pages gave. Positions are
creation times, so pages never repeat or skip a task, across restarts and replicas alike.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from a2a.types import a2a_pb2 as pb
from google.protobuf.timestamp_pb2 import Timestamp

from asya_gateway.service import Cursor, StatusUpdate, TaskService, TaskView

from .model import render_task, state_name
from .translate import a2a_of
from .view import TaskA2A

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 100
#: Tasks read from the service per call at most: a selective filter over a long history answers
#: a short (even empty) page with a token to go on, instead of reading everything at once.
SCAN_BUDGET: Final = 1000
_BATCH: Final = 100
_MAX_TOKEN: Final = 1024
_TOKEN_CHARS: Final = re.compile(r"[A-Za-z0-9_-]+")


class PageTokenError(ValueError):
    """A `pageToken` this door did not make (the message is fit for the client)."""


class PageToken(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    created_at: float
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    listed: Annotated[int, msgspec.Meta(ge=0)]  # tasks the pages before this one gave

    @property
    def cursor(self) -> Cursor:
        return (self.created_at, self.id)


_token_decoder: Final = msgspec.json.Decoder(PageToken)


def encode_token(token: PageToken) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(token)).rstrip(b"=").decode()


def decode_token(text: str) -> PageToken:
    """The token `encode_token` made; raises PageTokenError for anything else."""
    if len(text) > _MAX_TOKEN or not _TOKEN_CHARS.fullmatch(text):
        raise PageTokenError("`pageToken` is not a page token of this server")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        token = _token_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise PageTokenError("`pageToken` is not a page token of this server") from None
    if not math.isfinite(token.created_at):
        raise PageTokenError("`pageToken` is not a page token of this server")
    return token


class Query(msgspec.Struct, kw_only=True, frozen=True):
    """A ListTasks request's params, checked (see `query`)."""

    size: int = DEFAULT_PAGE_SIZE
    token: PageToken | None = None
    context_id: str = ""
    state: str = ""  # TASK_STATE_…; "" = any
    after: datetime | None = None  # statusTimestampAfter
    history_length: int | None = None
    include_artifacts: bool = False


def _get(params: dict[str, Any], camel: str, snake: str) -> Any:
    return params.get(camel, params.get(snake))


def query(params: dict[str, Any]) -> Query:
    """The params of a v1.0 ListTasks (shapes already checked against the SDK's message);
    raises ValueError naming the field for a value out of range."""
    size = _get(params, "pageSize", "page_size")
    if size is None:
        size = DEFAULT_PAGE_SIZE
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_PAGE_SIZE:
        raise ValueError(f"`pageSize` must be 1..{MAX_PAGE_SIZE} (got {size!r})")
    raw_token = _get(params, "pageToken", "page_token") or ""
    hist = _get(params, "historyLength", "history_length")
    if hist is not None and (not isinstance(hist, int) or hist < 0):
        raise ValueError(f"`historyLength` must be 0 or more (got {hist!r})")
    status = params.get("status")
    if isinstance(status, int) and not isinstance(status, bool):  # ProtoJSON allows numbers
        status = pb.TaskState.Name(status) if status in pb.TaskState.values() else ""
    state = status if isinstance(status, str) and status != "TASK_STATE_UNSPECIFIED" else ""
    after = None
    raw_after = _get(params, "statusTimestampAfter", "status_timestamp_after")
    if isinstance(raw_after, str) and raw_after:
        ts = Timestamp()
        ts.FromJsonString(raw_after)  # valid: the SDK's message accepted it
        after = ts.ToDatetime(tzinfo=UTC)
    return Query(
        size=size,
        token=decode_token(raw_token) if raw_token else None,
        context_id=str(_get(params, "contextId", "context_id") or ""),
        state=state,
        after=after,
        history_length=hist,
        include_artifacts=_get(params, "includeArtifacts", "include_artifacts") is True,
    )


def _a2a_task(view: TaskView, q: Query) -> TaskA2A | None:
    """The task's A2A view if it is an A2A task the query wants."""
    ctx, _ = a2a_of(view.payload)
    if ctx is None or (q.context_id and ctx != q.context_id):
        return None
    task = TaskA2A.for_view(view)
    task.apply(StatusUpdate(event_id=0, task=view))
    if q.state and state_name(task.status.state, "1.0") != q.state:
        return None
    if q.after is not None and not _changed_after(
        task.status.timestamp or view.created_at, q.after
    ):
        return None
    return task


def _changed_after(stamp: str, after: datetime) -> bool:
    try:
        return datetime.fromisoformat(stamp) > after
    except (TypeError, ValueError):  # no readable, zoned timestamp: not known to be after
        return False


def _render(task: TaskA2A, q: Query) -> dict[str, Any]:
    snap = task.snapshot()
    history = snap.history
    if q.history_length is not None:
        history = history[-q.history_length :] if q.history_length else []
    snap = msgspec.structs.replace(
        snap, history=history, artifacts=snap.artifacts if q.include_artifacts else []
    )
    return render_task(snap, "1.0")


async def list_page(service: TaskService, q: Query) -> dict[str, Any]:
    """The ListTasks result: `tasks`, `nextPageToken` ("" on the last page), `pageSize`, and
    `totalSize`: the tasks listed through this page (earlier pages + this one), which on the
    last page is every task the query matches."""
    listed = q.token.listed if q.token else 0
    cursor = q.token.cursor if q.token else None
    page: list[tuple[Cursor, TaskA2A]] = []
    scanned = 0
    next_cursor: Cursor | None = None
    while True:
        if scanned >= SCAN_BUDGET:
            next_cursor = cursor  # everything up to here was looked at
            break
        want = min(_BATCH, SCAN_BUDGET - scanned)
        batch = await service.recent(want, cursor)
        scanned += len(batch)
        found_more = False
        for item in batch:
            task = _a2a_task(item.task, q)
            if task is not None:
                if len(page) == q.size:  # one more match: a next page exists, starting here
                    found_more = True
                    break
                page.append((item.cursor, task))
            cursor = item.cursor
        if found_more:
            next_cursor = page[-1][0]
            break
        if len(batch) < want:  # the listing is over
            break
    total = listed + len(page)
    token = ""
    if next_cursor is not None:
        token = encode_token(PageToken(next_cursor[0], next_cursor[1], total))
    return {
        "tasks": [_render(task, q) for _, task in page],
        "nextPageToken": token,
        "pageSize": q.size,
        "totalSize": total,
    }


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "SCAN_BUDGET",
    "PageToken",
    "PageTokenError",
    "Query",
    "decode_token",
    "encode_token",
    "list_page",
    "query",
]
