"""docs/mcp.md's client snippet, run as a reader would (its own process and event loop) against
the MCP door with a `dev` flow."""

from __future__ import annotations

import re
import sys

import anyio
import pytest

from asya_gateway.flows import Flows, parse_flow
from asya_gateway.mcp import mcp_app

from ..conftest import ROOT
from .conftest import serve
from .memservice import MemoryTaskService

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def snippet() -> str:
    text = (ROOT / "docs" / "mcp.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/mcp.md should have exactly one Python snippet"
    return blocks[0]


async def test_the_docs_snippet_runs_against_the_door() -> None:
    code = snippet()
    assert 'URL = "http://127.0.0.1:8089/mcp"' in code
    svc = MemoryTaskService()
    dev = Flows([parse_flow({"name": "dev", "route": ["tokens"]}, 0)])
    async with svc.running(), serve(mcp_app(svc, dev).starlette()) as url:
        code = code.replace("http://127.0.0.1:8089", url)
        with anyio.fail_after(45):
            done = await anyio.run_process([sys.executable, "-c", code], check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert out.splitlines() == [
        "tools: ['dev']",
        "[1] You ",
        "[2] asked: ",
        "[3] why",
        "result: You asked: why",
        "task: task-1",
    ]
