"""Security basics: socket file mode, the SSRF guard on x-asya-gateway-url, frame and message
size limits, handler specs that cannot leave an importable module, gateway body limits."""

from __future__ import annotations

import stat
import struct
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from asya_runtime.client import envelope_for, invoke_once
from asya_runtime.errors import HandlerLoadError
from asya_runtime.loader import load_handler
from asya_runtime.wire import Emit, End, Error, Hello
from asya_sidecar.gateway import safe_gateway_url

from .conftest import transport_env
from .fakegw import fake_gateway
from .procs import Mesh, QueueClient, make_envelope, wait_for
from .results import Recorder
from .test_fuzz_runtime import exchange

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.mark.parametrize(("chmod", "mode"), [(None, 0o666), ("0600", 0o600), ("0660", 0o660)])
async def test_socket_file_mode(
    chmod: str | None, mode: int, mesh: Mesh, short_tmp: Path, recorder: Recorder
) -> None:
    env = {} if chmod is None else {"ASYA_SOCKET_CHMOD": chmod}
    await mesh.runtime("tests.faults.handlers:echo", short_tmp / "s", env)
    st = (short_tmp / "s" / "rt.sock").stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == mode, oct(st.st_mode)
    recorder.row(
        "security",
        f"socket file mode, ASYA_SOCKET_CHMOD={chmod!r}",
        1,
        f"socket created with mode {oct(mode)}",
    )


UNSAFE_URLS = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/",
    "http://",
    "https://",
    "",
    "ftp://example.com",
    "javascript:alert(1)",
    "//127.0.0.1:80",
    "http:///x",
    "127.0.0.1:8080",
    "data:text/plain,hi",
    "unix:///var/run/docker.sock",
    42,
    None,
]
SAFE_URLS = ["http://gw", "https://gw.example.com:8443/base", "http://127.0.0.1:8089"]


def test_ssrf_guard_table(recorder: Recorder) -> None:
    for url in UNSAFE_URLS:
        assert safe_gateway_url(url) is None, url
    for url in SAFE_URLS:
        assert safe_gateway_url(url) == url.rstrip("/"), url
    recorder.row(
        "security",
        "SSRF guard on x-asya-gateway-url (table)",
        len(UNSAFE_URLS) + len(SAFE_URLS),
        f"{len(UNSAFE_URLS)} non-http(s)/host-less values refused, "
        f"{len(SAFE_URLS)} http(s) URLs with a host accepted",
    )


async def test_ssrf_guard_end_to_end(mesh: Mesh, recorder: Recorder) -> None:
    """An unsafe header is ignored (the configured gateway is used); nothing else is called."""
    t = transport_env("sqlite", mesh.root)
    sock = mesh.root / "s"
    unsafe = ["file:///etc/passwd", "gopher://127.0.0.1:70/", "http://", "ftp://x/"]
    with anyio.fail_after(60):
        async with fake_gateway() as configured, QueueClient(t.config) as qc:
            await mesh.runtime("tests.faults.handlers:fly_burst", sock)
            mesh.sidecar("a", sock, {**t.env, "ASYA_GATEWAY_URL": configured.url})
            ids = [str(uuid.uuid4()) for _ in unsafe]
            await qc.send(
                "a",
                [
                    make_envelope("a", {"n": 1}, id=i, headers={"x-asya-gateway-url": u})
                    for i, u in zip(ids, unsafe, strict=True)
                ],
            )
            got: list[bytes] = []

            async def all_done() -> None:
                while len(got) < len(ids):
                    got.extend(await qc.drain("x-sink", wait=0.2))

            await all_done()
            await wait_for(
                lambda: all(any(i in r.path for r in configured.requests) for i in ids),
                10,
                "events at the configured gateway",
            )
    recorder.row(
        "security",
        "unsafe x-asya-gateway-url headers end to end",
        len(unsafe),
        "header ignored, events went to the configured gateway; envelopes routed",
    )


async def test_frame_size_limits(mesh: Mesh, short_tmp: Path, recorder: Recorder) -> None:
    limit = 4096
    await mesh.runtime(
        "tests.faults.handlers:inflate", short_tmp / "s", {"ASYA_MAX_FRAME_BYTES": str(limit)}
    )
    path = str(short_tmp / "s" / "rt.sock")
    # An incoming frame over the limit: error + end, connection closed, nothing buffered.
    big = msgspec.msgpack.encode(
        {
            "t": "invoke",
            "envelope": {
                "route": {"prev": [], "curr": "a", "next": []},
                "payload": "x" * (2 * limit),
            },
        }
    )
    frames, _ = exchange(path, struct.pack(">I", len(big)) + big)
    assert [type(f) for f in frames] == [Hello, Error, End], frames
    assert frames[1].code == "msg_parsing_error" and str(limit) in frames[1].message
    # An absurd prefix is refused before any body arrives.
    frames, _ = exchange(path, struct.pack(">I", 2**32 - 1))
    assert [type(f) for f in frames] == [Hello, Error, End], frames
    # An outgoing frame over the limit: the invocation fails, naming the size.
    frames = list(invoke_once(path, envelope_for({"bytes": 2 * limit}, ["a"]), timeout=10))
    kinds = [type(f) for f in frames]
    assert Emit not in kinds and kinds[-1] is End and Error in kinds, frames
    err = next(f for f in frames if isinstance(f, Error))
    assert str(limit) in err.message or "large" in err.message.lower(), err
    # And the runtime still serves a normal one.
    frames = list(invoke_once(path, envelope_for({"bytes": 10}, ["a"]), timeout=10))
    assert [type(f) for f in frames] == [Hello, Emit, End]
    recorder.row(
        "security",
        f"frame size limit ({limit} bytes): oversized in, absurd prefix, oversized out",
        3,
        f"error naming the limit + end each time; runtime kept serving ({err.message})",
    )


@pytest.mark.parametrize("kind", ["sqs"])
async def test_message_size_limit_is_not_a_poison_loop(
    kind: str, mesh: Mesh, recorder: Recorder
) -> None:
    """An emit over the transport's limit (SQS: 256 KiB) must fail the envelope, not loop."""
    t = transport_env(kind, mesh.root)
    sock = mesh.root / "s"
    victim = str(uuid.uuid4())
    with anyio.fail_after(90):
        async with QueueClient(t.config) as qc:
            await mesh.runtime("tests.faults.handlers:inflate", sock)
            sidecar = mesh.sidecar("a", sock, t.env)
            await qc.send("a", [make_envelope("a", {"bytes": 600_000}, id=victim)])
            verdict: list[dict[str, Any]] = []
            deadline = time.monotonic() + 45
            while not verdict and time.monotonic() < deadline:
                for q in ("x-sink", "x-sump"):
                    verdict += [msgspec.json.decode(b) for b in await qc.drain(q, wait=0.5)]
            log = sidecar.output()
            tries = log.count("will be redelivered")
    recorder.row(
        "security",
        f"emit over the transport's message limit ({kind}: 256 KiB)",
        1,
        f"verdict: {[(v['status']['phase'], v['status']['reason']) for v in verdict]}; "
        f"redelivery attempts in 45 s: {tries}",
    )
    assert verdict, f"no verdict after 45 s; the input was redelivered {tries} times (poison loop)"
    status = verdict[0]["status"]
    # Seen: the redelivery reported `succeeded/Completed` with the *input* payload: the
    # output that could not be sent vanished (the connection still held that invocation's
    # `end`, which the next invoke on it took for its own).
    assert status["phase"] == "failed", f"an unsendable output ended as {status}"


ESCAPES = [
    "tests.faults.handlers:echo.__globals__",
    "tests.faults.handlers:echo.__code__",
    "json:loads.__globals__.os",
    "/etc/passwd:x",
    "../tests/faults/handlers:echo",
    "tests/faults/handlers.py:echo",
    "tests.faults.handlers:__builtins__",
    "tests.faults.handlers:_trace.__globals__",
    "os.path:join.__self__",
]


def test_handler_specs_cannot_leave_an_importable_module(recorder: Recorder) -> None:
    loaded = []
    for spec in ESCAPES:
        try:
            h = load_handler(spec)
        except HandlerLoadError:
            continue
        loaded.append((spec, h))
    assert not loaded, loaded
    recorder.row(
        "security",
        "handler specs reaching past module:Class.method (dunders, paths)",
        len(ESCAPES),
        "every one refused with HandlerLoadError",
    )


async def test_gateway_refuses_oversized_and_deeply_nested_bodies(
    mesh: Mesh, recorder: Recorder
) -> None:
    t = transport_env("sqlite", mesh.root)
    _, url = await mesh.gateway(t.env)
    async with QueueClient(t.config) as q:
        await q.declare("a")  # the test plays a's sidecar: its queue must exist
    nested = b"[" * 100_000 + b"]" * 100_000
    nested_obj = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    huge = b'{"route": ["a"], "payload": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    seen = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        tid = (await http.post("/api/v1/mesh", json={"route": ["a"], "payload": 1})).json()["id"]
        for path in ("/api/v1/mesh", f"/api/v1/mesh/{tid}/events", f"/mesh/{tid}/fly"):
            for body, want in ((nested, 400), (nested_obj, 400), (huge, 413)):
                r = await http.post(
                    path, content=body, headers={"content-type": "application/json"}
                )
                seen.append((path, want, r.status_code))
                assert r.status_code == want, (path, len(body), r.status_code, r.text[:200])
                assert r.text, "no reason given"
        assert (await http.get("/health")).status_code == 200
    recorder.row(
        "security",
        "gateway: 100k-deep JSON arrays/objects and an 11 MiB body, 3 endpoints",
        len(seen),
        "400 (nested) / 413 (oversized) with a reason; gateway kept serving",
    )


async def test_failed_send_does_not_desync_the_runtime_connection(
    mesh: Mesh, recorder: Recorder
) -> None:
    """After an output fails to send mid-invocation, the next envelope on that connection
    must get its own handler's output (not the previous invocation's leftover frames)."""
    t = transport_env("sqs", mesh.root)
    sock = mesh.root / "s"
    too_big, normal = str(uuid.uuid4()), str(uuid.uuid4())
    with anyio.fail_after(60):
        async with QueueClient(t.config) as qc:
            await mesh.runtime("tests.faults.handlers:inflate", sock)
            mesh.sidecar("a", sock, t.env)
            await qc.send("a", [make_envelope("a", {"bytes": 600_000}, id=too_big)])
            await qc.send("a", [make_envelope("a", {"bytes": 10}, id=normal)])
            sink: dict[str, Any] = {}
            deadline = time.monotonic() + 30
            while normal not in sink and time.monotonic() < deadline:
                for b in await qc.drain("x-sink", wait=0.5):
                    e = msgspec.json.decode(b)
                    sink[e["id"]] = e
    recorder.row(
        "bad input",
        "an output the transport refuses, then a normal envelope (sqs)",
        1,
        f"normal envelope's payload in x-sink: {sink.get(normal, {}).get('payload')}",
    )
    assert normal in sink, "the normal envelope never arrived"
    payload = sink[normal]["payload"]
    assert isinstance(payload, dict) and len(payload.get("blob", "")) == 10, (
        f"the normal envelope did not get its own output: {payload}"
    )
