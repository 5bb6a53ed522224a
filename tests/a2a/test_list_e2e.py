"""ListTasks against real `asya-gateway run` processes with client keys, through the official
a2a-sdk client: tasks created before a kill -9 are listed after the restart (SQLite and
PostgreSQL), on another replica of the same PostgreSQL too, paged without repeats or gaps, by
context, and one key never sees another's tasks."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.types import a2a_pb2 as pb

from asya_mesh.transports import TransportConfig, open_transport, queue_name

from ..conftest import console_script
from ..gateway.helpers import spawn_logged, wait_healthy
from ..gateway.stores import BACKENDS, database_url
from .conftest import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(120)]

ALICE = "key-alice-0123456789"
BOB = "key-bob-9876543210"
NAMESPACE = "lt"


class Gateway:
    """One `asya-gateway run` process: keys, a flows file, the embedded queue, `store`."""

    def __init__(self, tmp: Path, store: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.tmp = tmp
        flows = tmp / "flows.json"
        flows.write_text(json.dumps({"flows": [{"name": "chat", "route": ["chat"]}]}))
        self.env = {k: v for k, v in env.items() if not k.startswith("ASYA_")} | {
            "ASYA_TRANSPORT": "sqlite",
            "ASYA_SQLITE_PATH": str(tmp / "queues.db"),
            "ASYA_NAMESPACE": NAMESPACE,
            "ASYA_GATEWAY_API_KEYS": f"alice:{ALICE},bob:{BOB}",
            "ASYA_GATEWAY_DATABASE_URL": store,
            "ASYA_GATEWAY_FLOWS": str(flows),
            "ASYA_GATEWAY_PORT": str(self.port),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.tmp / f"gw-{self.port}.log"

    def spawn(self) -> None:
        self.proc = spawn_logged([console_script("asya-gateway"), "run"], self.env, self.log)

    async def start(self) -> None:
        self.spawn()
        assert self.proc is not None
        await wait_healthy(self.proc, self.url, self.log, 30)

    async def declare_chat(self) -> None:
        """The test plays the `chat` actor's sidecar: its queue exists, nothing consumes it."""
        t = await open_transport(TransportConfig.from_env(self.env))
        try:
            await t.declare(queue_name(NAMESPACE, "chat"))
        finally:
            await t.aclose()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no shutdown path runs
            self.proc.wait(timeout=10)

    async def client(self, key: str) -> Client:
        http = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        factory = ClientFactory(ClientConfig(streaming=False, httpx_client=http))
        return await factory.create_from_url(self.url)


def _send(text: str, context_id: str = "") -> pb.SendMessageRequest:
    msg = pb.Message(
        role=pb.Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[pb.Part(text=text)]
    )
    if context_id:
        msg.context_id = context_id
    return pb.SendMessageRequest(
        message=msg, configuration=pb.SendMessageConfiguration(return_immediately=True)
    )


async def _create(client: Client, text: str, context_id: str = "") -> str:
    async for resp in client.send_message(_send(text, context_id)):
        assert resp.task.id
        return str(resp.task.id)
    raise AssertionError("no answer to SendMessage")


async def _walk(client: Client, **filters: Any) -> tuple[list[str], list[int]]:
    """Every page of a listing: the ids in order and each page's totalSize."""
    ids: list[str] = []
    totals: list[int] = []
    token = ""
    for _ in range(50):
        page = await client.list_tasks(pb.ListTasksRequest(page_token=token, **filters))
        ids += [t.id for t in page.tasks]
        totals.append(page.total_size)
        token = page.next_page_token
        if not token:
            return ids, totals
    raise AssertionError("the page token never ends")


@pytest.mark.parametrize("kind", BACKENDS)
async def test_list_tasks_survives_a_restart_and_spans_replicas(
    kind: str, short_tmp: Path, subprocess_env: dict[str, str]
) -> None:
    async with database_url(kind, str(short_tmp)) as store:
        a = Gateway(short_tmp, store, subprocess_env)
        b = Gateway(short_tmp, store, subprocess_env) if kind == "postgres" else None
        try:
            await a.start()
            await a.declare_chat()
            alice, bob = await a.client(ALICE), await a.client(BOB)
            mine = []
            for i in range(7):  # newest last; three of them in one conversation
                mine.append(await _create(alice, f"a{i}", "ctx-1" if i % 2 else ""))
            bobs = [await _create(bob, "b0"), await _create(bob, "b1", "ctx-1")]
            await alice.close()
            await bob.close()

            a.kill9()
            await a.start()
            replicas = [a] if b is None else [a, b]
            if b is not None:
                await b.start()
            for gw in replicas:
                alice, bob = await gw.client(ALICE), await gw.client(BOB)
                ids, totals = await _walk(alice, page_size=3)
                assert ids == mine[::-1], gw.url  # every page, newest first, once each
                assert totals == [3, 6, 7]
                in_ctx, _ = await _walk(alice, context_id="ctx-1", page_size=2)
                assert in_ctx == [mine[5], mine[3], mine[1]]
                theirs, _ = await _walk(bob)
                assert theirs == bobs[::-1]  # none of alice's, and alice saw none of bob's
                submitted, _ = await _walk(bob, status=pb.TaskState.TASK_STATE_SUBMITTED)
                assert submitted == bobs[::-1]
                await alice.close()
                await bob.close()
        finally:
            for gw in (a, b):
                if gw is not None:
                    gw.kill9()
