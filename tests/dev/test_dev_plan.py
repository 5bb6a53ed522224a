"""Pure tests of `asya dev`'s mesh plan, its --actor parsing, the SSE parser and the renderer."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest

import asya_gateway
from asya_dev.cli import DEFAULT_HANDLERS, DevOptions, parse_actor_overrides
from asya_dev.mesh import MeshNotReady, feed_connected, plan_mesh, wait_ready
from asya_dev.render import SseParser, TerminalRenderer

from .screen import screen


def test_package_exports_exist() -> None:
    for name in asya_gateway.__all__:
        assert hasattr(asya_gateway, name), name


def test_plan_configures_every_child_by_env(tmp_path: Path) -> None:
    ports = itertools.count(9100)
    opts = DevOptions(
        route=["stages", "tokens"], handlers=DEFAULT_HANDLERS, port=8100, workdir=tmp_path / "d"
    )
    plan = plan_mesh(opts, {"PATH": "/bin"}, port_for=lambda: next(ports))
    names = [c.name for c in plan.children]
    assert names == [
        "gateway",
        "stages/runtime",
        "tokens/runtime",
        "stages/sidecar",
        "tokens/sidecar",
        "x-sink/sidecar",
        "x-sump/sidecar",
    ]
    gateway = plan.children[0]
    assert gateway.argv[1:] == [
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        "8100",
        "--public-url",
        "http://127.0.0.1:8100",
    ]
    runtime = plan.children[2]
    sock = str((tmp_path / "d" / "tokens" / "asya-runtime.sock").resolve())
    assert runtime.argv[1:] == ["run", "examples.handlers.tokens:stream", "--socket", sock]
    sidecar = plan.children[4]
    assert sidecar.argv[1:] == ["run"]  # configured by env vars only
    env = sidecar.env
    assert env["ASYA_ACTOR_NAME"] == "tokens" and env["ASYA_IS_END_ACTOR"] == "false"
    assert env["ASYA_SOCKET_DIR"] == str(Path(sock).parent)
    assert env["ASYA_GATEWAY_URL"] == "http://127.0.0.1:8100"
    assert env["ASYA_METRICS_ADDR"] == "127.0.0.1:9101"
    assert env["ASYA_TRANSPORT"] == "sqlite" and env["ASYA_SQLITE_PATH"].endswith("queues.db")
    sink = plan.children[5].env
    assert sink["ASYA_IS_END_ACTOR"] == "true" and "ASYA_SOCKET_DIR" not in sink
    assert plan.runtime_ready_files[1] == Path(sock).parent / "runtime-ready"
    assert plan.sidecar_health_urls[0] == "http://127.0.0.1:9100/health"
    # Ready also waits for each actor's task feed (not the end actors'): a cancel right after
    # "mesh ready" must reach the handler.
    assert len(plan.feed_metrics_urls) == 2 and plan.feed_metrics_urls[0].endswith("/metrics")


def test_feed_connected_reads_the_sidecar_gauge() -> None:
    head = "# TYPE asya_actor_gateway_feed_connected gauge\n"
    assert feed_connected(head + "asya_actor_gateway_feed_connected 1.0\n")
    assert not feed_connected(head + "asya_actor_gateway_feed_connected 0.0\n")
    assert not feed_connected("asya_actor_active_messages 1.0\n")  # absent: not connected
    assert not feed_connected("asya_actor_gateway_feed_connected NaNx\n")


def test_a_listed_mesh_token_goes_whole_to_gateways_and_newest_to_sidecars(
    tmp_path: Path,
) -> None:
    opts = DevOptions(route=["tokens"], handlers=DEFAULT_HANDLERS, port=1, workdir=tmp_path)
    plan = plan_mesh(opts, {"ASYA_GATEWAY_MESH_TOKEN": " old , new "})
    by_name = {c.name: c.env for c in plan.children}
    assert by_name["gateway"]["ASYA_GATEWAY_MESH_TOKEN"] == " old , new "  # accepts both
    assert {by_name[f"{a}/sidecar"]["ASYA_GATEWAY_TOKEN"] for a in ("tokens", "x-sink")} == {"new"}
    fresh = plan_mesh(opts, {}).children
    token = fresh[0].env["ASYA_GATEWAY_MESH_TOKEN"]  # a fresh one per run, given to both
    assert len(token) > 30 and fresh[-1].env["ASYA_GATEWAY_TOKEN"] == token


def test_with_a_mesh_port_sidecars_report_on_the_mesh_listener(tmp_path: Path) -> None:
    opts = DevOptions(
        route=["tokens"],
        handlers=DEFAULT_HANDLERS,
        port=8100,
        workdir=tmp_path,
        gateways=2,
        database_url="postgresql://db/x",
        mesh_port=9200,
    )
    plan = plan_mesh(opts, {})
    by_name = {c.name: c for c in plan.children}
    for name, port in (("gateway", "9200"), ("gateway-2", "9201")):
        argv = by_name[name].argv
        assert argv[argv.index("--mesh-port") + 1] == port
    assert by_name["tokens/sidecar"].env["ASYA_GATEWAY_URL"] == "http://127.0.0.1:9200"
    assert plan.gateway_url == "http://127.0.0.1:8100"  # clients keep the client port


@pytest.mark.anyio
async def test_a_mesh_not_ready_in_time_names_what_it_waited_for(tmp_path: Path) -> None:
    ports = iter(range(1, 100))  # nothing listens on ports 1, 2, ...: never ready
    opts = DevOptions(route=["tokens"], handlers=DEFAULT_HANDLERS, port=9, workdir=tmp_path)
    plan = plan_mesh(opts, {}, port_for=lambda: next(ports))
    with pytest.raises(MeshNotReady) as caught:
        await wait_ready(plan, 0.3)
    said = str(caught.value)
    assert said.startswith("the mesh was not ready after 0.3s; waiting for gateway http://")
    for what in ("tokens's runtime", "tokens's sidecar (", "x-sink's sidecar", "task feed"):
        assert what in said, what


def test_plan_needs_a_handler_per_actor(tmp_path: Path) -> None:
    opts = DevOptions(route=["mine"], handlers=DEFAULT_HANDLERS, port=1, workdir=tmp_path)
    with pytest.raises(ValueError, match=r"no handler for actor\(s\) \['mine'\]"):
        plan_mesh(opts, {})


def test_parse_actor_overrides() -> None:
    assert parse_actor_overrides(["a=m:f", " b = x.y:C.m "]) == {"a": "m:f", "b": "x.y:C.m"}
    for bad in ("a", "=m:f", "a="):
        with pytest.raises(ValueError, match="expected name=module:attr"):
            parse_actor_overrides([bad])


def test_sse_parser_handles_multiline_data_ids_and_comments() -> None:
    p = SseParser()
    lines = [": keepalive", "", "id: 4", "event: partial", "data: a", "data: b", "", "data: x", ""]
    got = [ev for line in lines for ev in p.feed(line)]
    assert [(e.event, e.data, e.id) for e in got] == [
        ("partial", "a\nb", "4"),
        ("message", "x", None),
    ]


def test_renderer_tokens_inline_stages_as_lines_progress_as_bar() -> None:
    out = io.StringIO()
    r = TerminalRenderer(out, tty=False)
    r.event("update", {"id": "t", "status": "running", "actor": "a", "progress_percent": 5})
    r.event("update", {"id": "t", "status": "running", "actor": "a", "progress_percent": 9})
    r.event("partial", {"stage": "load", "message": "Loading..."})
    r.event("partial", {"partial": True, "text": "Hel"})
    r.event("partial", {"partial": True, "text": "lo"})
    r.event("partial", {"type": "progress", "percent": 50, "message": "half"})
    r.event("update", {"id": "t", "status": "succeeded", "result": {"n": 1}})
    text = out.getvalue()
    assert text.count("· running in a") == 1  # one line per status/actor change
    assert "» load: Loading...\nHello\n[############............]  50.0%  half\n" in text
    assert text.rstrip().endswith('✔ succeeded  (task t)\nresult: {\n  "n": 1\n}')
    assert r.final is not None and r.tokens == ["Hel", "lo"]


def test_on_a_tty_tokens_and_the_bar_keep_their_own_lines() -> None:
    out = io.StringIO()
    r = TerminalRenderer(out, tty=True, width=80)
    r.event("partial", {"stage": "load", "message": "Loading"})
    for i, t in enumerate(["Hel", "lo ", "wor", "ld\nsecond ", "line"]):
        r.event("partial", {"text": t})
        r.event("partial", {"type": "progress", "percent": 20 * (i + 1), "message": "step"})
    r.event("update", {"id": "t", "status": "running", "actor": "a"})
    r.event("partial", {"text": " more"})
    r.message("asya dev: no result after 5s")
    assert screen(out.getvalue()) == [
        "» load: Loading",
        "Hello world",
        "· running in a (0%)",
        "second line more",  # one token line, never broken by a bar
        "[########################] 100.0%  step",  # one bar, redrawn in place
        "asya dev: no result after 5s",  # the error on its own line
    ]


def test_on_a_tty_the_terminal_update_follows_the_live_area() -> None:
    out = io.StringIO()
    r = TerminalRenderer(out, tty=True, width=80)
    r.event("partial", {"type": "progress", "percent": 10})
    r.event("partial", {"type": "progress", "percent": 20})
    r.event("update", {"id": "t", "status": "failed", "error": "boom"})
    shown = screen(out.getvalue())
    assert shown[0].startswith("[#####") and "20.0%" in shown[0]
    assert shown[1:] == ["✘ failed  (task t)", "error: boom"]


def test_without_a_tty_an_error_does_not_glue_to_the_last_token() -> None:
    out = io.StringIO()
    r = TerminalRenderer(out, tty=False)
    r.event("partial", {"text": "last token"})
    r.message("asya dev: no result after 5s (--timeout)")
    assert out.getvalue() == "last token\nasya dev: no result after 5s (--timeout)\n"
