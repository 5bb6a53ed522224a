"""Broker outages while envelopes flow through real sidecars and a real gateway: nothing lost.

RabbitMQ is stopped and started, and killed with SIGKILL and started (a broker of this test's
own, never the shared one); SQS refuses connections for 10 s (a TCP proxy in front of moto is
closed and reopened: moto keeps its queues only in memory, so moto itself keeps running). A
client keeps creating tasks through the gateway throughout (retrying a refused create, as a
user would); every sidecar and the gateway must reconnect by themselves, and every created
task's envelope must reach x-sink through the two-actor route.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from asya_mesh.transports import TransportError, open_transport, queue_name
from tests.transports.own_broker import OwnRabbit, can_run_own_rabbit

from .conftest import TransportEnv, transport_env
from .procs import Mesh, free_port, wait_for
from .results import Recorder

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

#: tasks created per outage (the size knob; CI default below).
ENVELOPES = int(os.environ.get("ASYA_OUTAGE_ENVELOPES", "") or 300)
SQS_REFUSE_SECONDS = 10.0
_CREATE_PAUSE = 0.02  # between creates: a steady flow that spans the outage


# -- a RabbitMQ of our own -----------------------------------------------------------------


@pytest.fixture(scope="module")
def own_rabbit() -> Iterator[OwnRabbit]:
    if not can_run_own_rabbit():
        pytest.skip("needs services.sh and rabbitmq-server to run a broker of the test's own")
    rabbit = OwnRabbit()
    try:
        anyio.run(rabbit.start)
        yield rabbit
    finally:
        rabbit.clean()


# -- an SQS endpoint that can refuse connections -------------------------------------------


_PROXY = """
import asyncio, sys
listen, target = int(sys.argv[1]), int(sys.argv[2])
async def pump(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
async def handle(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen, reuse_address=True)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


class TcpProxy:
    """A proxy process forwarding 127.0.0.1:`port` to `target_port`; killing it refuses every
    new connection and resets the open ones, as an endpoint that went away does."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._proc: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        self._proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the test's own helper)
            [sys.executable, "-c", _PROXY, str(self.port), str(self.target_port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = await anyio.to_thread.run_sync(self._proc.stdout.readline)
        assert line.strip() == "ready", "the TCP proxy did not start"

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            assert self._proc.stdout is not None
            self._proc.stdout.close()
            self._proc = None


# -- the test --------------------------------------------------------------------------------


def _config(t: TransportEnv, **changes: Any) -> TransportEnv:
    env = dict(t.env)
    for var, field in (
        ("ASYA_RABBITMQ_URL", "rabbitmq_url"),
        ("ASYA_SQS_ENDPOINT", "sqs_endpoint"),
    ):
        if field in changes:
            env[var] = changes[field]
    return TransportEnv(t.kind, env, msgspec.structs.replace(t.config, **changes))


@contextlib.asynccontextmanager
async def flowing_mesh(mesh: Mesh, t: TransportEnv) -> AsyncIterator[str]:
    """Runtimes + sidecars for actors `a` and `b` (two sidecars each) and a gateway: its URL."""
    _, url = await mesh.gateway(t.env)
    for actor in ("a", "b"):
        for i in (0, 1):
            sock = mesh.root / f"{actor}{i}"
            await mesh.runtime("tests.faults.handlers:pipeline_step", sock, name=f"rt-{actor}{i}")
            mesh.sidecar(
                actor,
                sock,
                {**t.env, "ASYA_CONCURRENCY": "4", "ASYA_GATEWAY_URL": url},
                name=f"sidecar-{actor}{i}",
            )
    # Every actor's queue must exist before the first create: a routes to b, and an envelope
    # routed to an actor whose queue does not exist yet goes to x-sump (by design), never to
    # x-sink, which left this test waiting for tasks that had failed.
    async with contextlib.aclosing(await open_transport(t.config, concurrency=1)) as probe:
        for actor in ("a", "b"):
            q = queue_name(t.config.namespace, actor)
            with anyio.fail_after(60):
                while not await probe.exists(q):  # noqa: ASYNC110 (another process declares it)
                    await anyio.sleep(0.05)
    yield url


async def run_outage(
    mesh: Mesh, recorder: Recorder, t: TransportEnv, observer: TransportEnv, fault: str, outage: Any
) -> None:
    created: dict[str, float] = {}
    refused_creates = 0
    outage_window: list[float] = []
    sink: dict[str, int] = {}
    x_sink = queue_name(observer.config.namespace, "x-sink")
    async with (
        flowing_mesh(mesh, t) as url,
        contextlib.aclosing(await open_transport(observer.config, concurrency=16)) as watcher,
    ):
        all_created = anyio.Event()

        async def create_all(http: httpx.AsyncClient) -> None:
            nonlocal refused_creates
            for n in range(ENVELOPES):
                while True:
                    try:
                        resp = await http.post(
                            "/api/v1/mesh", json={"route": ["a", "b"], "payload": {"n": n}}
                        )
                    except httpx.HTTPError:
                        resp = None
                    if resp is not None and resp.status_code == 201:
                        created[resp.json()["id"]] = time.monotonic()
                        break
                    refused_creates += 1  # the broker is down: retry, as a user would
                    await anyio.sleep(0.5)
                await anyio.sleep(_CREATE_PAUSE)
            all_created.set()

        async def collect() -> None:
            # Counted when received, before the ack: an ack lost with the broker's connection
            # brings the envelope back, a duplicate, never a miss.
            while not (all_created.is_set() and created.keys() <= sink.keys()):
                d = await watcher.receive(x_sink, wait=0.2)
                if d is None:
                    continue
                env_id = msgspec.json.decode(d.body)["id"]
                sink[env_id] = sink.get(env_id, 0) + 1
                with contextlib.suppress(TransportError):
                    await d.ack()

        with anyio.fail_after(600):
            async with (
                httpx.AsyncClient(base_url=url, timeout=90) as http,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(create_all, http)
                tg.start_soon(collect)
                await wait_for(lambda: len(sink) >= ENVELOPES // 4, 120, "flow before outage")
                outage_window.append(time.monotonic())
                await outage()
                outage_window.append(time.monotonic())
        alive = [p.name for p in mesh.procs if not p.alive]
        assert not alive, f"exited during the outage: {alive}"
    missing = sorted(created.keys() - sink.keys())
    duplicates = sum(c - 1 for c in sink.values())
    outcome = (
        f"{len(created)} tasks through a -> b, {len(missing)} lost, {duplicates} duplicates, "
        f"outage {outage_window[1] - outage_window[0]:.1f}s, {refused_creates} refused creates "
        f"retried"
    )
    print(f"\n{fault}: {outcome}")
    recorder.row("broker", fault, len(created), outcome, lost=len(missing), dup=duplicates)
    assert not missing, f"{len(missing)} tasks never reached x-sink, e.g. {missing[:3]}"


@pytest.mark.parametrize("how", ["stop-start", "kill9-start"])
async def test_rabbitmq_restart_while_envelopes_flow(
    how: str, mesh: Mesh, recorder: Recorder, own_rabbit: OwnRabbit
) -> None:
    t = _config(transport_env("rabbitmq", mesh.root), rabbitmq_url=own_rabbit.url)

    async def outage() -> None:
        if how == "stop-start":
            await own_rabbit.stop()
        else:
            await own_rabbit.kill9()
        await own_rabbit.start()

    await run_outage(mesh, recorder, t, t, f"RabbitMQ {how}", outage)


async def test_sqs_refusing_connections_for_10s(mesh: Mesh, recorder: Recorder) -> None:
    direct = transport_env("sqs", mesh.root)
    assert direct.config.sqs_endpoint is not None
    moto_port = int(direct.config.sqs_endpoint.rsplit(":", 1)[1].split("/")[0])
    proxy = TcpProxy(moto_port)
    proxied = _config(direct, sqs_endpoint=f"http://127.0.0.1:{proxy.port}")
    proxied.env.update(ASYA_SQS_VISIBILITY_TIMEOUT="5s", ASYA_SQS_WAIT_TIME_SECONDS="1")
    await proxy.start()
    try:

        async def outage() -> None:
            proxy.stop()
            await anyio.sleep(SQS_REFUSE_SECONDS)  # the outage itself: what is being tested
            await proxy.start()

        # The test watches x-sink directly on moto: only the mesh goes through the proxy.
        await run_outage(mesh, recorder, proxied, direct, "SQS refusing 10 s", outage)
    finally:
        proxy.stop()
