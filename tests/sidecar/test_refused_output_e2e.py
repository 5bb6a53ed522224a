"""An output the transport refuses mid-invocation: the runtime connection stays in step, and an
output over the message limit sends its envelope to x-sump naming the limit (no poison loop).

The sidecar runs in process over a real runtime process and a real SQLite queue whose size
limit is lowered so that it refuses bodies over a few KiB (as SQS refuses 256 KiB).
"""

from __future__ import annotations

import anyio
import pytest

from asya_mesh.transports import open_transport
from asya_sidecar.config import SidecarConfig
from asya_sidecar.runner import run_sidecar

from .harness import TIMEOUT, Mesh, envelope

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

LIMIT = 4096


async def test_refused_output_keeps_the_connection_in_step_and_goes_to_sump(mesh: Mesh) -> None:
    mesh.runtime("a", "tests.sidecar.handlers:sized")
    cfg = SidecarConfig.from_env(
        mesh.env
        | {
            "ASYA_ACTOR_NAME": "a",
            "ASYA_SOCKET_DIR": str(mesh.socket_dir("a")),
            "ASYA_CONCURRENCY": "1",  # one worker: every envelope reuses the same connection
        }
    )
    with anyio.fail_after(TIMEOUT):
        transport = await open_transport(cfg.transport)
        # The transport's own check (`Transport.check_size`), at a limit the outputs cross.
        transport.max_message_bytes = LIMIT
        # 1: its first output is refused while the invocation still runs (more frames unread).
        await mesh.send("a", envelope("big-first", ["a"], {"sizes": [LIMIT * 2, 10]}))
        # 2: an ordinary envelope on the same connection must get its own output.
        await mesh.send("a", envelope("normal", ["a"], {"sizes": [20]}))
        # 3: its last output (sent with the ack) is refused.
        await mesh.send("a", envelope("big-last", ["a"], {"sizes": [30, LIMIT * 2]}))
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: run_sidecar(
                    cfg, transport, handle_signals=False, task_status=task_status
                )
            )
            sunk = {e["id"]: e for e in [await mesh.take("x-sump"), await mesh.take("x-sump")]}
            sink = [await mesh.take("x-sink"), await mesh.take("x-sink")]
            tg.cancel_scope.cancel()
        await transport.aclose()
    by_id = {e["id"]: e for e in sink}
    # The normal envelope's output is its own (20-byte blob), not a leftover of envelope 1.
    assert by_id["normal"]["payload"] == {"blob": "x" * 20}
    assert by_id["normal"]["status"]["phase"] == "succeeded"
    # Envelope 3's first (small) output went out before its last one was refused.
    assert by_id["big-last"]["payload"] == {"blob": "x" * 30}
    for eid in ("big-first", "big-last"):
        status = sunk[eid]["status"]
        assert status["phase"] == "failed"
        assert f"limit of {LIMIT}" in sunk[eid]["payload"]["error"], sunk[eid]["payload"]
    # Permanent: sent to x-sump at the first delivery, never redelivered.
    assert await mesh.depth("a") == 0
