"""End to end: `asya-runtime run` as a subprocess, a test client speaking the wire."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asya_runtime.client import raw_invoke
from asya_runtime.wire import Emit, End, Error, Fly, Hello

from .wire_client import RuntimeProcess, WireClient, envelope

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

Start = Callable[..., RuntimeProcess]
H = "tests.runtime.handlers"


def kinds(frames: list[Any]) -> list[str]:
    return [type(f).__name__.lower() for f in frames]


def test_hello_is_sent_on_accept(runtime: Start) -> None:
    rt = runtime("examples.handlers.util:echo")
    with rt.client() as c:
        h = c.hello()
        assert h.protocol == 1 and h.handler == "examples.handlers.util:echo"
        assert h.runtime.startswith("asya-runtime/") and h.pid == rt.proc.pid


@pytest.mark.parametrize(
    ("spec", "payload", "expected"),
    [
        ("examples.handlers.util:echo", {"a": 1}, [{"a": 1}]),
        (f"{H}:async_fn", {"x": 21}, [{"doubled": 42}]),
        ("examples.handlers.sync_upper:upper", {"text": "hi"}, [{"text": "HI"}]),
        (f"{H}:sync_gen", {"q": 1}, [{"got": {"q": 1}, "next": ["b"]}]),
        (
            "examples.handlers.fanout:split",
            {"items": [1, 2, 3]},
            [{"item": i, "index": i - 1, "count": 3} for i in (1, 2, 3)],
        ),
        (f"{H}:sync_fn_none", {}, []),
        (f"{H}:async_none", {}, []),
        (f"{H}:gen_nothing", {}, []),
        (f"{H}:typed", {}, [{"when": "2024-05-06", "raw": "b2s="}]),
    ],
)
def test_handler_kinds(runtime: Start, spec: str, payload: Any, expected: list[Any]) -> None:
    rt = runtime(spec)
    with rt.client() as c:
        c.hello()
        frames = c.call(envelope(payload, ["a", "b"]))
        emits = [f for f in frames if isinstance(f, Emit)]
        assert [e.payload for e in emits] == expected
        assert isinstance(frames[-1], End) and not any(isinstance(f, Error) for f in frames)
        for e in emits:
            assert (e.route.prev, e.route.curr, e.route.next) == (["a"], "b", [])


def test_class_handler_keeps_state_across_invocations(runtime: Start) -> None:
    rt = runtime("examples.handlers.counter.Counter.handle")
    with rt.client() as c:
        c.hello()
        counts = [c.call(envelope({}))[0].payload["count"] for _ in range(3)]  # type: ignore[union-attr]
    assert counts == [1, 2, 3]


@pytest.mark.parametrize("spec", [f"{H}:fly_then_sleep", f"{H}:sync_gen"])
def test_fly_arrives_while_handler_sleeps(runtime: Start, spec: str) -> None:
    rt = runtime(spec)
    with rt.client() as c:
        c.hello()
        t0 = time.monotonic()
        c.invoke(envelope({"sleep": 1.0}, ["a", "b"]))
        first = c.recv()
        t_fly = time.monotonic() - t0
        rest = c.until_end()
        t_end = time.monotonic() - t0
    assert isinstance(first, Fly)
    assert t_fly < 0.5, t_fly  # the handler then sleeps 1 s
    assert t_end >= 0.95
    assert isinstance(rest[-2], Emit)


def test_upstream_style_fly_model_and_isoformat_datetimes(runtime: Start) -> None:
    rt = runtime(f"{H}:fly_model")
    with rt.client() as c:
        c.hello()
        frames = c.call(envelope({}))
    assert kinds(frames) == ["fly", "emit", "end"]
    assert frames[0].data == {"done": 1, "at": "2024-06-01T12:00:00+00:00"}  # type: ignore[union-attr]
    assert frames[1].payload == {"at": "2024-06-01T12:00:00+00:00"}  # type: ignore[union-attr]


def test_sigterm_with_nothing_run_says_nothing_about_threads(runtime: Start) -> None:
    """Issue 14: "exiting past 1 worker thread(s)" on SIGTERM when no handler had run (the
    thread anyio had started for the bind; test_server_shell.py checks it deterministically)."""
    for _ in range(3):  # the old message came from a race: give it several chances
        rt = runtime(f"{H}:SyncClassHandler.handle")
        os.kill(rt.proc.pid, signal.SIGTERM)
        assert rt.proc.wait(10) == 0
        err = rt.proc.stderr.read() if rt.proc.stderr else ""
        assert "exiting past" not in err, err


def test_sync_generator_flies_arrive_in_order_in_batches(runtime: Start) -> None:
    rt = runtime(f"{H}:sync_flood")
    with rt.client() as c:
        c.hello()
        frames = c.call(envelope({"n": 20000}))
        assert [f.data["i"] for f in frames[:-2]] == list(range(20000))  # type: ignore[union-attr]
        assert kinds(frames[-2:]) == ["emit", "end"]
        frames = c.call(envelope({"n": 3, "big": 20 * 1024 * 1024}))  # over the 16 MiB limit
        assert kinds(frames) == ["fly", "fly", "fly", "error", "end"]
        assert "exceeds" in frames[3].message  # type: ignore[union-attr]
        assert kinds(c.call(envelope({"n": 1}))) == ["fly", "emit", "end"]  # still usable


def test_mixed_fly_emit_order_is_kept(runtime: Start) -> None:
    rt = runtime(f"{H}:mixed")
    with rt.client() as c:
        c.hello()
        frames = c.call(envelope({}, ["a", "b"]))
    assert kinds(frames) == ["fly", "emit", "fly", "emit", "fly", "end"]
    assert frames[1].route.curr == "b" and frames[3].route.curr == "z"  # type: ignore[union-attr]


def test_exception_mid_stream(runtime: Start) -> None:
    rt = runtime(f"{H}:raise_mid_stream")
    with rt.client() as c:
        c.hello()
        frames = c.call(envelope({}))
    assert kinds(frames) == ["fly", "emit", "error", "end"]
    err = frames[2]
    assert isinstance(err, Error)
    assert (err.code, err.type, err.mro) == (
        "processing_error",
        "KeyError",
        ["LookupError", "Exception"],
    )
    assert "missing-thing" in err.message and "raise_mid_stream" in err.traceback


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (f"{H}:misuse", "SET denied for path '.id'"),
        (f"{H}:bad_verb", "ABI protocol error"),
        (f"{H}:untyped", "Not JSON serializable: object"),
    ],
)
def test_abi_misuse_is_processing_error(runtime: Start, spec: str, message: str) -> None:
    rt = runtime(spec)
    with rt.client() as c:
        c.hello()
        frames = c.call(envelope({}))
        err = next(f for f in frames if isinstance(f, Error))
        assert err.code == "processing_error" and message in err.message
        assert isinstance(frames[-1], End)
        assert kinds(c.call(envelope({})))[-1] == "end"  # still usable


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"payload": 1}, "route"),
        ({"route": {"prev": [], "curr": 5, "next": []}, "payload": 1}, "$.route.curr"),
        ({"route": {"prev": [], "curr": "a", "next": []}}, "payload"),
        (
            {"route": {"prev": [], "curr": "a", "next": []}, "payload": 1, "headers": []},
            "$.headers",
        ),
        ({"route": {"prev": [], "curr": "a", "next": []}, "payload": 1, "id": 7}, "$.id"),
    ],
)
def test_invalid_envelope_names_the_field_and_connection_survives(
    runtime: Start, env: dict[str, Any], field: str
) -> None:
    rt = runtime("examples.handlers.util:echo")
    with rt.client() as c:
        c.hello()
        frames = c.call(raw_invoke(env))
        assert kinds(frames) == ["error", "end"]
        err = frames[0]
        assert isinstance(err, Error) and err.code == "msg_parsing_error" and field in err.message
        again = c.call(envelope({"ok": 1}))
        assert again[0].payload == {"ok": 1}  # type: ignore[union-attr]


def test_oversized_frame_gets_error_end_and_close(runtime: Start) -> None:
    rt = runtime("examples.handlers.util:echo", "--max-frame-bytes", "1000")
    with rt.client() as c:
        c.hello()
        c.send_raw((5000).to_bytes(4, "big") + b"\x00" * 10)
        frames = [c.recv(), c.recv()]
        assert kinds(frames) == ["error", "end"]
        assert frames[0].code == "msg_parsing_error"  # type: ignore[union-attr]
        assert c.recv() is None  # closed
    with rt.client() as c:  # the runtime itself is fine
        c.hello()
        assert kinds(c.call(envelope({}))) == ["emit", "end"]


def test_oversized_output_is_processing_error(runtime: Start) -> None:
    rt = runtime(f"{H}:big", "--max-frame-bytes", "2000")
    with rt.client() as c:
        c.hello()
        frames = c.call(envelope({"size": 5000}))
        assert kinds(frames) == ["error", "end"] and "exceeds" in frames[0].message  # type: ignore[union-attr]


def test_invoke_while_running_is_a_protocol_error(runtime: Start) -> None:
    rt = runtime("examples.handlers.util:sleep")
    with rt.client() as c:
        c.hello()
        c.invoke(envelope({"sleep": 5}))
        c.invoke(envelope({"sleep": 0}))
        frames = [c.recv(), c.recv()]
        assert kinds(frames) == ["error", "end"]
        assert "'invoke' is not allowed while the connection is running" in frames[0].message  # type: ignore[union-attr]
        assert c.recv() is None


def _wait_for(path: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("spec", [f"{H}:hang_signalled", f"{H}:agen_hang", f"{H}:sync_gen_hang"])
def test_cancel_runs_finally_and_still_ends(runtime: Start, short_tmp: Path, spec: str) -> None:
    rt = runtime(spec)
    marker = short_tmp / "cancelled"
    started = short_tmp / "started"
    with rt.client() as c:
        c.hello()
        c.invoke(envelope({"marker": str(marker), "started": str(started)}))
        if spec != f"{H}:hang_signalled":
            assert isinstance(c.recv(), Fly)
        else:
            assert _wait_for(started)
        c.cancel()
        frames = c.until_end()
        assert kinds(frames) == ["end"]
        assert _wait_for(marker)
        again = short_tmp / "started-again"
        c.invoke(envelope({"started": str(again)}))  # the connection is reusable after a cancel
        if spec == f"{H}:hang_signalled":
            assert _wait_for(again)
        else:
            assert isinstance(c.recv(), Fly)
        c.cancel()
        assert kinds(c.until_end())[-1] == "end"
        c.cancel()  # a late cancel (no invocation running) is ignored
        c.invoke(envelope({}))
        c.cancel()
        assert kinds(c.until_end())[-1] == "end"


@pytest.mark.parametrize("spec", [f"{H}:hang_signalled", f"{H}:agen_hang"])
def test_disconnect_runs_finally(runtime: Start, short_tmp: Path, spec: str) -> None:
    rt = runtime(spec)
    marker = short_tmp / "gone"
    started = short_tmp / "started"
    c = rt.client()
    c.hello()
    c.invoke(envelope({"marker": str(marker), "started": str(started)}))
    if spec == f"{H}:hang_signalled":
        assert _wait_for(started)
    else:
        assert isinstance(c.recv(), Fly)
    c.close()
    assert _wait_for(marker)


def test_concurrent_invocations_overlap(runtime: Start) -> None:
    rt = runtime("examples.handlers.util:sleep", "--concurrency", "4")
    results: list[float] = []

    def one() -> None:
        with rt.client() as c:
            c.hello()
            t0 = time.monotonic()
            c.call(envelope({"sleep": 0.5}))
            results.append(time.monotonic() - t0)

    t0 = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert time.monotonic() - t0 < 1.6  # serial would be 2 s


def test_concurrency_limit_queues_extra_invocations(runtime: Start) -> None:
    rt = runtime("examples.handlers.util:sleep", "--concurrency", "2")
    t0 = time.monotonic()
    clients = [rt.client() for _ in range(3)]
    for c in clients:
        c.hello()  # hello never waits for a slot
        c.invoke(envelope({"sleep": 0.4}))
    for c in clients:
        c.until_end()
        c.close()
    assert 0.75 < time.monotonic() - t0 < 3.0  # 2 slots, 3 x 0.4 s: two rounds


def test_blocking_sync_handler_does_not_stall_others(runtime: Start, short_tmp: Path) -> None:
    rt = runtime(f"{H}:block_signalled")
    started = short_tmp / "started"
    with rt.client() as slow, rt.client() as fast:
        slow.hello()
        slow.invoke(envelope({"sleep": 1.0, "started": str(started)}))
        assert _wait_for(started)
        t0 = time.monotonic()
        fast.hello()
        fast.call(envelope({"sleep": 0}))
        assert time.monotonic() - t0 < 0.8  # the blocked thread takes 1 s
        slow.until_end()


def test_sigterm_removes_socket_and_ready_file(runtime: Start) -> None:
    rt = runtime("examples.handlers.util:echo")
    ready = rt.socket.parent / "runtime-ready"
    assert ready.read_text() == "ready"
    assert oct(rt.socket.stat().st_mode & 0o777) == "0o666"
    os.kill(rt.proc.pid, signal.SIGTERM)
    assert rt.proc.wait(10) == 0
    assert not rt.socket.exists() and not ready.exists()


def test_sigint_with_open_invocation_cleans_up(runtime: Start, short_tmp: Path) -> None:
    rt = runtime(f"{H}:hang_signalled", "--shutdown-grace", "500ms")
    started = short_tmp / "started"
    c = rt.client()
    c.hello()
    c.invoke(envelope({"started": str(started)}))
    assert _wait_for(started)
    os.kill(rt.proc.pid, signal.SIGINT)
    assert rt.proc.wait(10) == 0
    assert not rt.socket.exists()
    assert kinds(c.until_end()) == ["end"]
    c.close()


def _gone(path: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not path.exists():
            return True
        time.sleep(0.02)
    return False


def test_sigterm_lets_the_invocation_in_progress_finish(runtime: Start) -> None:
    rt = runtime(f"{H}:fly_then_sleep")
    ready = rt.socket.parent / "runtime-ready"
    busy, idle = rt.client(), rt.client()
    try:
        busy.hello()
        idle.hello()
        busy.invoke(envelope({"sleep": 4.0}))
        assert isinstance(busy.recv(), Fly)  # the handler is now sleeping
        os.kill(rt.proc.pid, signal.SIGTERM)
        # Unpublished at once, while the handler still runs: a sidecar sees "not ready".
        assert _gone(rt.socket) and _gone(ready)
        assert rt.proc.poll() is None
        with pytest.raises(OSError):
            rt.client(timeout=2.0)
        assert idle.recv() is None  # an idle connection is closed: no invoke can race in
        frames = busy.until_end()  # the in-flight invocation completes normally
        assert kinds(frames) == ["emit", "end"]
        assert frames[0].payload == {"sleep": 4.0}  # type: ignore[union-attr]
        assert busy.recv() is None  # then its connection closes too
        assert rt.proc.wait(10) == 0
    finally:
        busy.close()
        idle.close()


def test_invoke_racing_the_shutdown_is_run_or_never_delivered(
    runtime: Start, short_tmp: Path
) -> None:
    """A client that sends its next invoke the instant it gets `end` (a sidecar does the same,
    only slower): the runtime either runs it, or the client's `send` fails. An invoke that the
    client could send and then got no answer to (EOF) would be lost by a sidecar."""
    rt = runtime(f"{H}:sleep_signalled", "--concurrency", "8")
    outcomes: list[str] = []
    started = [short_tmp / f"started-{i}" for i in range(8)]

    def one(c: WireClient) -> None:
        c.until_end()
        try:
            c.invoke(envelope({"sleep": 0}))
        except OSError:
            outcomes.append("not delivered")
            return
        f = c.recv()
        if f is None:
            outcomes.append("dropped")
            return
        rest = [f] if isinstance(f, End) else [f, *c.until_end()]
        outcomes.append("ran" if kinds(rest) == ["emit", "end"] else f"odd {kinds(rest)}")

    clients = [rt.client() for _ in range(8)]
    try:
        for c, marker in zip(clients, started, strict=True):
            c.hello()
            c.invoke(envelope({"sleep": 0.5, "started": str(marker)}))
        threads = [threading.Thread(target=one, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        assert all(_wait_for(m) for m in started)  # all eight are sleeping in the handler
        os.kill(rt.proc.pid, signal.SIGTERM)
        for t in threads:
            t.join(20)
        assert rt.proc.wait(10) == 0
    finally:
        for c in clients:
            c.close()
    assert len(outcomes) == 8
    assert all(o in ("ran", "not delivered") for o in outcomes), outcomes


def test_second_signal_cuts_the_grace_short(runtime: Start, short_tmp: Path) -> None:
    rt = runtime(f"{H}:agen_hang")  # default grace: 25 s
    marker = short_tmp / "cancelled"
    with rt.client() as c:
        c.hello()
        c.invoke(envelope({"marker": str(marker)}))
        assert isinstance(c.recv(), Fly)
        os.kill(rt.proc.pid, signal.SIGTERM)
        assert _gone(rt.socket)
        assert rt.proc.poll() is None  # draining: the handler still runs
        t0 = time.monotonic()
        os.kill(rt.proc.pid, signal.SIGTERM)
        assert kinds(c.until_end()) == ["end"]
        assert rt.proc.wait(10) == 0
        assert time.monotonic() - t0 < 10  # well under the 25 s grace
        assert marker.read_text() == "closed\n"  # the handler's finally ran


def test_grace_expiry_cancels_the_handler(runtime: Start, short_tmp: Path) -> None:
    rt = runtime(f"{H}:agen_hang", "--shutdown-grace", "1s")
    marker = short_tmp / "cancelled"
    with rt.client() as c:
        c.hello()
        c.invoke(envelope({"marker": str(marker)}))
        assert isinstance(c.recv(), Fly)
        t0 = time.monotonic()
        os.kill(rt.proc.pid, signal.SIGTERM)
        assert kinds(c.until_end()) == ["end"]
        assert time.monotonic() - t0 >= 0.9  # not before the grace is over
        assert rt.proc.wait(10) == 0
        assert marker.read_text() == "closed\n"
        assert not rt.socket.exists()


def test_grace_from_the_environment(short_tmp: Path, subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "ASYA_RUNTIME_SHUTDOWN_GRACE": "300ms"}
    rt = RuntimeProcess(f"{H}:agen_hang", short_tmp / "g.sock", env).wait_ready()
    try:
        with rt.client() as c:
            c.hello()
            c.invoke(envelope({}))
            assert isinstance(c.recv(), Fly)
            os.kill(rt.proc.pid, signal.SIGTERM)
            assert kinds(c.until_end()) == ["end"]
            assert rt.proc.wait(10) == 0
    finally:
        rt.stop()


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {"ASYA_SOCKET_CHMOD": "rw"}, "ASYA_SOCKET_CHMOD: invalid octal mode 'rw'"),
        ([], {"ASYA_RUNTIME_CONCURRENCY": "lots"}, "ASYA_RUNTIME_CONCURRENCY: invalid value"),
        ([], {"ASYA_MAX_FRAME_BYTES": "0"}, "ASYA_MAX_FRAME_BYTES: invalid value '0'"),
        ([], {"ASYA_RUNTIME_SHUTDOWN_GRACE": "soon"}, "ASYA_RUNTIME_SHUTDOWN_GRACE: invalid"),
        (["--shutdown-grace", "-1"], {}, "--shutdown-grace: invalid duration '-1'"),
        (["--concurrency", "x"], {}, "--concurrency: invalid value 'x'"),
    ],
)
def test_bad_configuration_names_the_variable(
    args: list[str],
    env: dict[str, str],
    expected: str,
    short_tmp: Path,
    subprocess_env: dict[str, str],
) -> None:
    sock = short_tmp / "bad.sock"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "asya_runtime",
            "run",
            f"{H}:agen_hang",
            "--socket",
            str(sock),
            *args,
        ],
        env={**subprocess_env, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], p.stderr
    assert not sock.exists() and not (short_tmp / "runtime-ready").exists()


def test_stale_socket_is_replaced(short_tmp: Path, subprocess_env: dict[str, str]) -> None:
    path = short_tmp / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # leaves a socket file nobody listens on
    rt = RuntimeProcess("examples.handlers.util:echo", path, subprocess_env).wait_ready()
    try:
        with rt.client() as c:
            c.hello()
    finally:
        rt.stop()


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("not a spec", "bad handler spec"),
        ("no_such_mod_q:f", "module 'no_such_mod_q' not found"),
        ("examples.handlers.util:nope", "has no attribute 'nope'"),
        ("examples.handlers.tokens", "a handler name is missing: use module:function or"),
        ("tests.runtime.handlers:NOT_CALLABLE", "not callable"),
        ("tests.runtime.handlers:NeedsArgs.handle", "no arguments"),
        ("tests.runtime.handlers:RaisesInInit.handle", "no model"),
        (None, "no handler given"),
    ],
)
def test_bad_spec_exits_nonzero_before_binding(
    short_tmp: Path, subprocess_env: dict[str, str], spec: str | None, needle: str
) -> None:
    env = dict(subprocess_env)
    env.pop("ASYA_HANDLER", None)
    rt = RuntimeProcess(spec, short_tmp / "never.sock", env)
    _, err = rt.proc.communicate(timeout=20)
    assert rt.proc.returncode != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    assert lines[0].startswith("asya-runtime: cannot load handler")
    assert not (short_tmp / "never.sock").exists()
    assert not (short_tmp / "runtime-ready").exists()


def test_env_handler_and_socket_dir(short_tmp: Path, subprocess_env: dict[str, str]) -> None:
    env = dict(
        subprocess_env,
        ASYA_HANDLER="examples.handlers.tokens.stream",
        ASYA_SOCKET_DIR=str(short_tmp),
        ASYA_SOCKET_NAME="e.sock",
        ASYA_SOCKET_CHMOD="",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "asya_runtime", "run"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        path = short_tmp / "e.sock"
        deadline = time.monotonic() + 15
        while not (short_tmp / "runtime-ready").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        with WireClient(path) as c:
            assert c.hello().handler == "examples.handlers.tokens.stream"
            frames = c.call(envelope({"prompt": "x", "token_delay": 0}))
            text = "".join(f.data["text"] for f in frames if isinstance(f, Fly))
            assert frames[-2].payload["text"] == text  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_invoke_command_prints_json_lines(runtime: Start, subprocess_env: dict[str, str]) -> None:
    rt = runtime("examples.handlers.stages:pipeline")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "asya_runtime",
            "invoke",
            "--socket",
            str(rt.socket),
            "--route",
            "stages,tokens",
            '{"stage_delay": 0}',
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    lines = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert [ln["t"] for ln in lines] == ["hello"] + ["fly"] * 4 + ["emit", "end"]
    assert lines[-2]["route"] == {"prev": ["stages"], "curr": "tokens", "next": []}
    err = subprocess.run(
        [
            sys.executable,
            "-m",
            "asya_runtime",
            "invoke",
            "--socket",
            str(rt.socket),
            "--envelope",
            '{"payload": 1}',
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert err.returncode == 1 and '"msg_parsing_error"' in err.stdout


def test_hello_first_even_under_load(runtime: Start) -> None:
    rt = runtime("examples.handlers.util:fly_flood")
    with rt.client() as busy, rt.client() as other:
        assert isinstance(busy.recv(), Hello)
        busy.invoke(envelope({"n": 200000}))
        t0 = time.monotonic()
        assert isinstance(other.recv(), Hello)
        assert kinds(other.call(envelope({"n": 1}))) == ["fly", "emit", "end"]
        assert time.monotonic() - t0 < 0.5
        n = sum(isinstance(f, Fly) for f in busy.until_end())
        assert n == 200000


def test_invalid_utf8_in_envelope_is_msg_parsing_error(runtime: Start) -> None:
    rt = runtime("examples.handlers.util:echo")
    body = (
        b"\x82\xa1t\xa6invoke\xa8envelope\x82\xa5route\x83\xa4prev\x90"
        b"\xa4curr\xa2\xff\xfe\xa4next\x90\xa7payload\x01"
    )
    with rt.client() as c:
        c.hello()
        c.send_raw(len(body).to_bytes(4, "big") + body)
        frames = c.until_end()
        assert kinds(frames) == ["error", "end"]
        assert frames[0].code == "msg_parsing_error"  # type: ignore[union-attr]
        bad_tag = b"\x81\xa1t\xa2\xff\xfe"
        c.send_raw(len(bad_tag).to_bytes(4, "big") + bad_tag)
        assert kinds([c.recv(), c.recv()]) == ["error", "end"]
        assert c.recv() is None
    with rt.client() as c:  # the process survived
        c.hello()
        assert kinds(c.call(envelope({}))) == ["emit", "end"]


def test_sigterm_does_not_wait_for_a_blocked_sync_handler(runtime: Start, short_tmp: Path) -> None:
    rt = runtime(f"{H}:block_signalled", "--shutdown-grace", "0.5")
    started = short_tmp / "started"
    c = rt.client()
    c.hello()
    c.invoke(envelope({"sleep": 30, "started": str(started)}))
    assert _wait_for(started)
    t0 = time.monotonic()
    os.kill(rt.proc.pid, signal.SIGTERM)
    assert rt.proc.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert kinds(c.until_end()) == ["end"]
    assert not rt.socket.exists()
    c.close()
