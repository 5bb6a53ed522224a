"""The per-envelope state machine, driven directly: events in, actions out, no I/O."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asya_mesh.events import FlyEvent, StatusEvent
from asya_runtime.wire import Emit, End, Error, Fly, Route
from asya_sidecar import envelope as E
from asya_sidecar.resiliency import Resiliency, parse_policies
from asya_sidecar.routing import Names

NOW = 1_800_000_000.0
NAMES = Names(actor="a")
GW = "http://gw"


def settings_(**kw: Any) -> E.Settings:
    return E.Settings(names=NAMES, actor_timeout=30.0, **kw)


def body(**kw: Any) -> bytes:
    env: dict[str, Any] = {
        "id": "t-1",
        "route": {"prev": [], "curr": "a", "next": ["b"]},
        "headers": {},
        "payload": {"x": 1},
    }
    env.update(kw)
    return json.dumps(env).encode()


def emit(curr: str = "b", payload: Any = 1) -> E.FrameArrived:
    return E.FrameArrived(Emit(payload=payload, route=Route(prev=["a"], curr=curr, next=[])))


def err(type_: str = "ValueError") -> E.FrameArrived:
    return E.FrameArrived(Error(code="processing_error", message="boom", type=type_, mro=[type_]))


FLY = E.FrameArrived(Fly(data={"i": 0}))
END = E.FrameArrived(End())


def kinds(actions: list[E.Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def blocking(actions: list[E.Action]) -> E.Action | None:
    side = (E.Report, E.Count, E.Log, E.Fatal)
    rest = [a for a in actions if not isinstance(a, side)]
    assert len(rest) <= 1, actions
    if rest:
        assert actions[-1] is rest[0], "the action awaiting an answer comes last"
    return rest[0] if rest else None


def start(s: E.Settings | None = None, **kw: Any) -> tuple[E.EnvelopeMachine, list[E.Action]]:
    m = E.EnvelopeMachine(s or settings_(), rand=lambda: 0.5)
    return m, m.handle(E.Delivered(body(**kw), 1), NOW)


def sent_env(a: E.Action | None) -> dict[str, Any]:
    assert isinstance(a, E.Send | E.SendWithAck), a
    return msgspec.to_builtins(a.out.envelope)  # type: ignore[no-any-return]


# -- table: one path each ---------------------------------------------------------------------


def test_success_holds_the_last_emit_and_sends_it_with_the_ack() -> None:
    m, acts = start()
    assert isinstance(blocking(acts), E.StartInvoke)
    assert m.handle(emit(), NOW) == []  # held
    last = blocking(m.handle(END, NOW))
    assert isinstance(last, E.SendWithAck) and last.out.actor == "b"
    assert m.handle(E.Sent(), NOW) == [] and m.outcome == "ack"


def test_two_emits_the_first_is_sent_before_the_next_frame() -> None:
    m, _ = start()
    m.handle(emit(payload=1), NOW)
    first = blocking(m.handle(emit(payload=2), NOW))
    assert isinstance(first, E.Send) and first.out.envelope.payload == 1
    with pytest.raises(E.EnvelopeStateError, match="send is unanswered"):
        m.handle(END, NOW)
    m.handle(E.Sent(), NOW)
    last = blocking(m.handle(END, NOW))
    assert isinstance(last, E.SendWithAck) and last.out.envelope.payload == 2
    assert last.out.envelope.id != "t-1"  # fan-out id


def test_no_output_sends_the_input_to_sink_succeeded() -> None:
    m, _ = start()
    a = blocking(m.handle(END, NOW))
    env = sent_env(a)
    assert a.out.actor == "x-sink"  # type: ignore[union-attr]
    assert env["status"]["phase"] == "succeeded" and env["payload"] == {"x": 1}


def test_error_sends_held_first_then_the_failure_and_ignores_later_emits() -> None:
    m, _ = start()
    m.handle(emit(payload="before"), NOW)
    assert m.handle(err(), NOW) == []
    assert m.handle(emit(payload="after"), NOW) == []  # nothing routed after an error frame
    acts = m.handle(END, NOW)
    assert E.Count("runtime_errors", "execution_error") in acts
    first = blocking(acts)
    assert sent_env(first)["payload"] == "before"
    second = blocking(m.handle(E.Sent(), NOW))
    env = sent_env(second)
    assert isinstance(second, E.SendWithAck) and second.out.actor == "x-sink"
    assert (
        env["status"]["reason"] == "RuntimeError" and env["payload"]["error"] == "processing_error"
    )


def test_error_with_a_retry_policy_goes_back_with_the_delay_then_acks() -> None:
    pol = parse_policies(json.dumps({"default": {"maxAttempts": 3, "initialDelay": "2s"}}))
    m, _ = start(settings_(resiliency=Resiliency(policies=pol)))
    m.handle(err(), NOW)
    retry = blocking(m.handle(END, NOW))
    assert isinstance(retry, E.Send) and retry.out.delay == 2.0 and retry.out.actor == "a"
    assert sent_env(retry)["status"]["phase"] == "retrying"
    assert blocking(m.handle(E.Sent(), NOW)) == E.Ack()  # a delayed send cannot carry the ack


def test_parse_error_and_route_mismatch_go_to_sump_without_invoking() -> None:
    m = E.EnvelopeMachine(settings_())
    acts = m.handle(E.Delivered(b"not json"), NOW)
    assert E.Count("failed", "parse_error") in acts
    a = blocking(acts)
    assert isinstance(a, E.SendWithAck) and a.out.actor == "x-sump"
    m, acts = start(route={"prev": [], "curr": "other", "next": []})
    a = blocking(acts)
    assert a.out.actor == "x-sump" and E.Count("failed", "route_mismatch") in acts  # type: ignore[union-attr]


@pytest.mark.parametrize(("state", "phase"), [("canceled", "canceled"), ("paused", "paused")])
def test_preflight_canceled_or_paused_goes_to_sink_runtime_not_called(
    state: str, phase: str
) -> None:
    m, acts = start(settings_(gateway_url=GW))
    assert blocking(acts) == E.Preflight(GW, "t-1")
    a = blocking(m.handle(E.PreflightAnswered(state), NOW))
    assert sent_env(a)["status"]["phase"] == phase


def test_preflight_unknown_carries_on_and_reports_progress() -> None:
    m, _ = start(settings_(gateway_url=GW))
    acts = m.handle(E.PreflightAnswered(None), NOW)
    states = [a.event.status for a in acts if isinstance(a, E.Report)]  # type: ignore[union-attr]
    assert states == ["received", "processing"] and isinstance(blocking(acts), E.StartInvoke)
    acts = m.handle(emit(), NOW + 0.25)
    (done,) = [a.event for a in acts if isinstance(a, E.Report)]
    assert isinstance(done, StatusEvent) and done.status == "completed"
    assert done.data.duration_ms == 250 and done.data.curr == "b"


def test_deadline_passed_goes_to_sink_failed_timeout() -> None:
    _, acts = start(status={"deadline_at": "2020-01-01T00:00:00Z"})
    env = sent_env(blocking(acts))
    assert (env["status"]["phase"], env["status"]["reason"]) == ("failed", "Timeout")


def test_deadline_shortens_the_invocation_timeout() -> None:
    _, acts = start(status={"deadline_at": "2027-01-15T08:00:10Z"})
    inv = blocking(acts)
    assert isinstance(inv, E.StartInvoke) and 0 < inv.timeout <= 30.0


def test_timeout_cancels_then_sends_held_and_the_timeout() -> None:
    m, _ = start()
    m.handle(emit(), NOW)
    assert blocking(m.handle(E.TimedOut(), NOW)) == E.CancelInvocation()
    acts = m.handle(E.CancelDone(ended=True), NOW)
    assert not any(isinstance(a, E.Fatal) for a in acts)
    assert sent_env(blocking(acts))["route"]["curr"] == "b"  # the held emit first
    env = sent_env(blocking(m.handle(E.Sent(), NOW)))
    assert env["status"]["reason"] == "Timeout"


def test_a_runtime_that_never_ends_is_fatal_but_the_envelope_is_settled() -> None:
    m, _ = start()
    m.handle(E.TimedOut(), NOW)
    acts = m.handle(E.CancelDone(ended=False), NOW)
    assert any(isinstance(a, E.Fatal) for a in acts)
    assert isinstance(blocking(acts), E.SendWithAck)


def test_runtime_lost_sends_to_sump_with_the_original_payload() -> None:
    m, _ = start()
    env = sent_env(blocking(m.handle(E.RuntimeGone("gone"), NOW)))
    assert env["route"]["curr"] == "a" and env["payload"]["original_payload"] == {"x": 1}


def test_invoke_not_delivered_is_requeued_untouched() -> None:
    m, _ = start()
    assert blocking(m.handle(E.InvokeFailed("closed"), NOW)) == E.Requeue(0.0)
    assert m.outcome == "requeue"


def test_send_failure_mid_invocation_stops_the_handler_then_requeues() -> None:
    m, _ = start()
    m.handle(emit(), NOW)
    m.handle(emit(), NOW)
    assert blocking(m.handle(E.SendFailed("down"), NOW)) == E.CancelInvocation()
    assert blocking(m.handle(E.CancelDone(ended=False), NOW)) == E.Requeue(1.0)


@pytest.mark.parametrize(("attempt", "expect"), [(1, "requeue"), (4, "requeue"), (5, "sump")])
def test_outputs_that_keep_failing_end_in_sump(attempt: int, expect: str) -> None:
    m = E.EnvelopeMachine(settings_())
    m.handle(E.Delivered(body(), attempt), NOW)
    a = blocking(m.handle(END, NOW))
    acts = m.handle(E.SendFailed("queue name rejected"), NOW)
    if expect == "requeue":
        assert blocking(acts) == E.Requeue(1.0)
        return
    env = sent_env(blocking(acts))
    assert a is not None and env["id"] == "t-1" and "failed 5 times" in env["payload"]["error"]
    assert env["payload"]["original_payload"] == {"x": 1}
    assert E.Count("failed", "routing_error") in m.handle(E.Sent(), NOW)
    assert m.outcome == "ack"


def test_too_large_output_goes_to_sump_at_once_and_a_failing_sump_requeues() -> None:
    m, _ = start()
    m.handle(END, NOW)
    a = blocking(m.handle(E.SendFailed("exceeds the limit of 9 bytes", too_large=True), NOW))
    env = sent_env(a)
    assert "too large" in env["payload"]["error"] and "limit of 9 bytes" in env["payload"]["error"]
    assert blocking(m.handle(E.SendFailed("still down"), NOW)) == E.Requeue(1.0)


def test_sends_to_a_next_actor_must_find_its_queue_sends_to_the_end_actors_need_not() -> None:
    m, _ = start()
    m.handle(emit(), NOW)
    last = blocking(m.handle(END, NOW))
    assert isinstance(last, E.SendWithAck) and last.must_exist
    m, _ = start()
    sink = blocking(m.handle(END, NOW))  # no output: the input to x-sink
    assert isinstance(sink, E.SendWithAck) and sink.out.actor == "x-sink" and not sink.must_exist


def test_unknown_next_actor_sends_the_task_to_sump_naming_actor_and_queue() -> None:
    m, _ = start()
    m.handle(emit("typo"), NOW)
    m.handle(END, NOW)
    missing = "queue 'asya-default-typo' does not exist (no consumer has declared it)"
    a = blocking(m.handle(E.SendFailed(missing, missing=True), NOW))
    env = sent_env(a)
    assert isinstance(a, E.SendWithAck) and a.out.actor == "x-sump" and not a.must_exist
    assert env["id"] == "t-1" and env["status"]["phase"] == "failed"
    error = env["status"]["error"]
    assert error["type"] == "UnknownActor"
    assert "'typo'" in error["message"] and "'asya-default-typo'" in error["message"]
    assert env["payload"]["original_payload"] == {"x": 1}
    assert E.Count("failed", "routing_error") in m.handle(E.Sent(), NOW)
    assert m.outcome == "ack"


def test_unknown_actor_mid_invocation_stops_the_handler_then_goes_to_sump() -> None:
    m, _ = start()
    m.handle(emit("typo", payload=1), NOW)
    sent = blocking(m.handle(emit("b", payload=2), NOW))
    assert isinstance(sent, E.Send) and sent.out.actor == "typo" and sent.must_exist
    missing = "queue 'asya-default-typo' does not exist"
    cancel = blocking(m.handle(E.SendFailed(missing, missing=True), NOW))
    assert cancel == E.CancelInvocation()
    env = sent_env(blocking(m.handle(E.CancelDone(ended=True), NOW)))
    assert env["status"]["error"]["type"] == "UnknownActor"
    assert "'typo'" in env["status"]["error"]["message"]


def test_lease_lost_at_the_ack_is_neither_acked_nor_requeued() -> None:
    m, _ = start()
    m.handle(END, NOW)
    assert blocking(m.handle(E.SendFailed("lapsed", lease_lost=True), NOW)) is None
    assert m.outcome == "lease_lost" and m.state is E.State.DONE


def test_shutdown_while_running_cancels_and_requeues_untouched() -> None:
    m, _ = start()
    m.handle(emit(), NOW)
    assert blocking(m.handle(E.Shutdown(), NOW)) == E.CancelInvocation()
    assert blocking(m.handle(E.CancelDone(ended=True), NOW)) == E.Requeue(0.0)
    m2, _ = start(settings_(gateway_url=GW))
    assert blocking(m2.handle(E.Shutdown(), NOW)) == E.Requeue(0.0)


def test_cancelled_at_the_gateway_routes_nothing_and_acks() -> None:
    m, _ = start()
    m.handle(emit(), NOW)
    assert blocking(m.handle(E.Cancelled("canceled"), NOW)) == E.CancelInvocation()
    assert blocking(m.handle(E.CancelDone(ended=True), NOW)) == E.Ack()


def test_illegal_events_name_event_and_state() -> None:
    m = E.EnvelopeMachine(settings_())
    with pytest.raises(E.EnvelopeStateError, match="Sent in state NEW"):
        m.handle(E.Sent(), NOW)


# -- FLY counting -----------------------------------------------------------------------------


def test_flies_get_seq_from_the_header_and_outputs_carry_the_count() -> None:
    m, _ = start(settings_(gateway_url=GW), headers={"x-asya-fly-count": "7"})
    m.handle(E.PreflightAnswered(None), NOW)
    seqs = []
    for accepted in (True, False, True):  # the dropped one gets no place in the count
        (rep,) = m.handle(FLY, NOW)
        assert isinstance(rep, E.Report) and isinstance(rep.event, FlyEvent)
        seqs.append(rep.event.seq)
        if accepted:
            m.fly_accepted()
    assert seqs == [7, 8, 8]
    m.handle(emit(), NOW)
    m.handle(FLY, NOW)
    m.fly_accepted()  # after the emit, before end: still counted into it
    out = sent_env(blocking(m.handle(END, NOW)))
    assert out["headers"]["x-asya-fly-count"] == 10


@pytest.mark.parametrize("value", ["x", -3, True, None, "1.5", [1]])
def test_a_bad_fly_count_counts_as_zero(value: Any) -> None:
    m, _ = start(headers={"x-asya-fly-count": value})
    assert sent_env(blocking(m.handle(END, NOW)))["headers"]["x-asya-fly-count"] == 0


def test_no_gateway_no_fly_reports() -> None:
    m, _ = start()
    assert m.handle(FLY, NOW) == []


# -- properties over event sequences ----------------------------------------------------------

frames = st.lists(
    st.sampled_from(["fly", "emit", "emit_sink", "emit_pause", "error", "interrupt"]), max_size=8
)
interrupts = st.sampled_from(["timeout", "lost", "shutdown", "cancelled", "not_delivered"])


@settings(max_examples=300, deadline=None)
@given(
    script=frames,
    interrupt=interrupts,
    sends=st.lists(
        st.sampled_from(["ok", "ok", "ok", "fail", "large", "lease", "missing"]), max_size=12
    ),
    ended=st.booleans(),
    attempt=st.integers(1, 6),
    preflight=st.sampled_from([None, "running", "canceled", "paused"]),
    gateway=st.booleans(),
    flies_accepted=st.booleans(),
    stored=st.booleans(),
)
def test_every_delivery_ends_in_exactly_one_settlement(
    script: list[str],
    interrupt: str,
    sends: list[str],
    ended: bool,
    attempt: int,
    preflight: str | None,
    gateway: bool,
    flies_accepted: bool,
    stored: bool,
) -> None:
    m = E.EnvelopeMachine(settings_(gateway_url=GW if gateway else None), rand=lambda: 0.5)
    log: list[E.Action] = []
    send_results = iter(sends)
    error_seen = False
    paused = False
    emits_after_error = 0

    # (position in `log` just after the settling action, which): Ack, Requeue, or a
    # SendWithAck answered Sent (the input acked by the transport with the last output).
    settlements: list[tuple[int, str]] = []

    def feed(event: E.EnvelopeEvent) -> E.Action | None:
        acts = m.handle(event, NOW)
        log.extend(acts)
        for i, a in enumerate(acts, start=len(log) - len(acts) + 1):
            if isinstance(a, E.Ack | E.Requeue):
                settlements.append((i, type(a).__name__))
        for a in acts:
            if isinstance(a, E.Report) and isinstance(a.event, FlyEvent) and flies_accepted:
                m.fly_accepted()
        return blocking(acts)

    def answer(a: E.Action | None) -> E.Action | None:
        """Answer everything but StartInvoke (the script feeds frames) until nothing is pending."""
        while a is not None and not isinstance(a, E.StartInvoke | E.Ack | E.Requeue):
            if isinstance(a, E.Preflight):
                a = feed(E.PreflightAnswered(preflight))
            elif isinstance(a, E.Send | E.SendWithAck):
                r = next(send_results, "ok")
                if r == "ok":
                    if isinstance(a, E.SendWithAck):
                        settlements.append((log.index(a, len(log) - 1) + 1, "SendWithAck"))
                    a = feed(E.Sent())
                else:
                    a = feed(
                        E.SendFailed(
                            r,
                            too_large=r == "large",
                            lease_lost=r == "lease",
                            missing=r == "missing" and a.must_exist,
                        )
                    )
            elif isinstance(a, E.CancelInvocation):
                a = feed(E.CancelDone(ended))
            elif isinstance(a, E.ReportPause):
                a = feed(E.PauseStored(stored))
            else:
                raise AssertionError(a)
        return a

    a = answer(feed(E.Delivered(body(), attempt)))
    if isinstance(a, E.StartInvoke) and interrupt == "not_delivered":
        answer(feed(E.InvokeFailed("closed")))  # only ever instead of the first frame
    elif isinstance(a, E.StartInvoke):
        for step in [*script, "end"]:
            if not m.running:
                break
            if step == "interrupt":
                event: E.EnvelopeEvent = {
                    "timeout": E.TimedOut(),
                    "lost": E.RuntimeGone("gone"),
                    "shutdown": E.Shutdown(),
                    "cancelled": E.Cancelled("canceled"),
                }[interrupt]
                answer(feed(event))
                break
            if step == "error":
                error_seen = error_seen or not paused
                answer(feed(err()))
            elif step == "fly":
                answer(feed(FLY))
            elif step in ("emit", "emit_sink", "emit_pause"):
                before = len([x for x in log if isinstance(x, E.Send | E.SendWithAck)])
                frame = emit("" if step == "emit_sink" else "b", payload=step)
                if step == "emit_pause":
                    e = frame.frame
                    assert isinstance(e, Emit)
                    frame = E.FrameArrived(msgspec.structs.replace(e, headers={E.PAUSE_HEADER: {}}))
                was_paused = paused
                answer(feed(frame))
                if step == "emit_pause" and not error_seen:
                    paused = True
                if error_seen or was_paused:
                    emits_after_error += 1
                    after = len([x for x in log if isinstance(x, E.Send | E.SendWithAck)])
                    assert after == before  # nothing routed after an error frame
            else:
                answer(feed(END))

    # Exactly one settlement, and the machine knows which: an Ack, a Requeue, or a SendWithAck
    # answered Sent (counted; an Ack after that one would ack twice). None only if the lease
    # was lost (another consumer has the message and settles it).
    assert m.state is E.State.DONE
    kinds = [k for _, k in settlements]
    requeues = [x for x in log if isinstance(x, E.Requeue)]
    if m.outcome == "lease_lost":
        assert kinds == [], kinds
    else:
        assert len(kinds) == 1, kinds
        assert (kinds[0] == "Requeue") == (m.outcome == "requeue"), (kinds, m.outcome)
        # Every output before the settlement: nothing is sent or settled after it.
        pos = settlements[0][0]
        settling = E.Send | E.SendWithAck | E.Ack | E.Requeue
        assert not [x for x in log[pos:] if isinstance(x, settling)], log[pos - 1 :]
    # Only sends to a next actor must find its queue; x-sink / x-sump are plain sends.
    for x in log:
        if isinstance(x, E.Send | E.SendWithAck):
            assert x.must_exist == (x.out.actor not in ("x-sink", "x-sump")), x
    # A next actor found missing sends the task to x-sump naming it, never back to the queue.
    # (Only when every other send succeeded: a "missing" on a plain send is a plain failure.)
    if "missing" in sends:
        k = sends.index("missing")
        tried = [x for x in log if isinstance(x, E.Send | E.SendWithAck)]
        others_ok = all(r == "ok" for i, r in enumerate(sends) if i != k)
        if others_ok and len(tried) > k and tried[k].must_exist:
            assert not requeues or interrupt in ("shutdown", "not_delivered")
            assert any(x.out.actor == "x-sump" for x in tried[k + 1 :]) or m.outcome != "ack"
    # Nothing after the settlement.
    sends_ = [i for i, x in enumerate(log) if isinstance(x, E.Send | E.SendWithAck)]
    settle = [i for i, x in enumerate(log) if isinstance(x, E.Ack | E.Requeue)]
    if settle:
        assert all(i < settle[0] for i in sends_)
    # The held last emit goes out with the ack on a clean run.
    clean = not {"error", "interrupt", "emit_pause"} & set(script) and interrupt != "not_delivered"
    emitted = [x for x in script if x.startswith("emit")]
    if (
        clean
        and emitted
        and all(r == "ok" for r in sends[: len(emitted)])
        and preflight
        in (
            None,
            "running",
        )
    ):
        assert isinstance(log[-1] if m.outcome == "ack" else None, E.SendWithAck | type(None))
        last = [x for x in log if isinstance(x, E.Send | E.SendWithAck)][-1]
        assert isinstance(last, E.SendWithAck) and last.out.envelope.payload == emitted[-1]
    # A pause is never routed; it is acked only once the gateway stored it.
    assert not any(
        isinstance(x, E.Send | E.SendWithAck) and x.out.envelope.payload == "emit_pause"
        for x in log
    )
    if paused and any(isinstance(x, E.ReportPause) for x in log):
        assert m.outcome == ("ack" if stored else "requeue")
    # No emit payload routed after a cancel (timeout/shutdown/cancelled) that it followed.
    if interrupt == "cancelled" and m.outcome == "ack":
        assert not any(
            isinstance(x, E.Send | E.SendWithAck) and x.out.actor == "b"
            for x in log[
                next(
                    (i for i, x in enumerate(log) if isinstance(x, E.CancelInvocation)), len(log)
                ) :
            ]
        )


# -- pause ------------------------------------------------------------------------------------


def pause_emit(payload: Any = "p") -> E.FrameArrived:
    e = emit(payload=payload).frame
    assert isinstance(e, Emit)
    return E.FrameArrived(
        msgspec.structs.replace(e, headers={E.PAUSE_HEADER: {"prompt": "Approve?"}})
    )


def test_a_pause_is_reported_not_routed_and_acked_once_stored() -> None:
    m, _ = start(settings_(gateway_url=GW))
    m.handle(E.PreflightAnswered(None), NOW)
    m.handle(FLY, NOW)
    m.fly_accepted()
    assert m.handle(pause_emit(), NOW) == []
    assert m.handle(emit(payload="later"), NOW) == []  # nothing routed after a pause
    rep = blocking(m.handle(END, NOW))
    assert isinstance(rep, E.ReportPause) and rep.envelope_id == "t-1"
    assert rep.event.status == "paused"
    assert rep.event.data.pause == {"prompt": "Approve?"} and rep.event.data.flies == 1
    env = rep.event.data.envelope
    assert env["payload"] == "p" and env["route"]["curr"] == "b"
    assert env["headers"]["x-asya-fly-count"] == 1
    assert blocking(m.handle(E.PauseStored(True), NOW)) == E.Ack()


def test_a_pause_the_gateway_did_not_store_is_requeued() -> None:
    m, _ = start(settings_(gateway_url=GW))
    m.handle(E.PreflightAnswered(None), NOW)
    m.handle(emit(payload="first"), NOW)
    first = blocking(m.handle(pause_emit(), NOW))  # the emit before the pause is routed
    assert isinstance(first, E.Send) and first.out.envelope.payload == "first"
    m.handle(E.Sent(), NOW)
    m.handle(END, NOW)
    assert blocking(m.handle(E.PauseStored(False), NOW)) == E.Requeue(E.REQUEUE_UNPAUSED)


def test_a_pause_with_no_gateway_is_requeued() -> None:
    m, _ = start()
    m.handle(pause_emit(), NOW)
    assert blocking(m.handle(END, NOW)) == E.Requeue(E.REQUEUE_UNPAUSED)


def test_a_pause_header_that_is_not_an_object_is_an_ordinary_header() -> None:
    m, _ = start()
    e = emit().frame
    assert isinstance(e, Emit)
    m.handle(E.FrameArrived(msgspec.structs.replace(e, headers={E.PAUSE_HEADER: "yes"})), NOW)
    assert isinstance(blocking(m.handle(END, NOW)), E.SendWithAck)
