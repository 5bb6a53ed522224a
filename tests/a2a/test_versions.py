"""Our v0.3 rendering is exactly what the SDK's own v1.0 → v0.3 conversion makes of our v1.0
rendering (numbers compared as JSON numbers: protobuf holds them as doubles), with one chosen
difference: the SDK says `final: false` for `input-required`; we close the stream there, so
that event is the stream's last and says `final: true`."""

from __future__ import annotations

from typing import Any

from a2a.compat.v0_3 import conversions
from a2a.compat.v0_3 import types as v03
from a2a.types import a2a_pb2 as pb
from google.protobuf.json_format import ParseDict
from hypothesis import given, settings
from hypothesis import strategies as st

from asya_gateway.a2a.model import (
    A2AArtifactUpdate,
    A2AEvent,
    A2AStatusUpdate,
    TaskSnapshot,
    render_v03,
    render_v1,
)

from .test_core import Script, _end, _step


def _num(x: Any) -> Any:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, list):
        return [_num(v) for v in x]
    return {k: _num(v) for k, v in x.items()}


def _sdk_v03(ev: A2AEvent) -> dict[str, Any]:
    v1 = render_v1(ev)
    if isinstance(ev, A2AStatusUpdate):
        m = conversions.to_compat_task_status_update_event(
            ParseDict(v1["statusUpdate"], pb.TaskStatusUpdateEvent())
        )
    elif isinstance(ev, A2AArtifactUpdate):
        m = conversions.to_compat_task_artifact_update_event(
            ParseDict(v1["artifactUpdate"], pb.TaskArtifactUpdateEvent())
        )
    else:
        m = conversions.to_compat_task(ParseDict(v1["task"], pb.Task()))
    out: dict[str, Any] = m.model_dump(mode="json", exclude_none=True, by_alias=True)
    return out


def _ours(ev: A2AEvent) -> dict[str, Any]:
    model: Any = {
        A2AStatusUpdate: v03.TaskStatusUpdateEvent,
        A2AArtifactUpdate: v03.TaskArtifactUpdateEvent,
        TaskSnapshot: v03.Task,
    }[type(ev)]
    out: dict[str, Any] = model.model_validate(render_v03(ev)).model_dump(
        mode="json", exclude_none=True, by_alias=True
    )
    return out


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_step, max_size=20), end=_end)
def test_v03_matches_the_sdk_conversion(steps: list[tuple[str, Any]], end: str) -> None:
    s = Script()
    for kind, data in steps:
        if kind == "fly":
            s.fly(data)
        else:
            s.status(kind, pause={"prompt": "?", "n": 1} if kind == "paused" else None)
    s.status(end, result={"ok": 1}, error={"message": "boom"})
    for ev in [s.task.snapshot(), *s.events]:
        sdk = _sdk_v03(ev)
        if isinstance(ev, A2AStatusUpdate) and ev.status.state == "INPUT_REQUIRED":
            assert sdk["final"] is False
            sdk["final"] = True
        assert _num(_ours(ev)) == _num(sdk), ev
