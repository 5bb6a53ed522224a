"""The gateway's CPU per task for a sidecar's events, in process, against a floor in the same run.

    .venv/bin/python bench/ingest_bench.py [--quick] [--payload BYTES]

The real ASGI app on the embedded SQLite store (no uvicorn, no sockets) takes what the bench's
actor sends for each task at a hop: `received` + `processing` in one `POST /api/v1/mesh/events`
and `completed` in the next, for K tasks per request (K = 1, 4, 16: a sidecar's outbox batches
whatever piles up during its previous POST). CPU (all threads) per task. The floor does the
irreducible part of the same work in plain code: parse the same bodies with msgspec and write
the same rows in one bare SQLite transaction per request (WAL, synchronous=NORMAL).
`--payload` gives each task an input payload of that many bytes: every status rewrites the
task's stored document, payload included, so the gateway's cost per hop grows with it.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import anyio
import msgspec

from asya_gateway.app import create_app
from asya_gateway.config import GatewayConfig

Asgi = Any


async def _call(app: Asgi, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    sent = False
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await anyio.sleep_forever()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(m: MutableMapping[str, Any]) -> None:
        if m["type"] == "http.response.start":
            out["status"] = m["status"]
        elif m["type"] == "http.response.body":
            out["body"] += m.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return out["status"], out["body"]


def _event(tid: str, status: str, prev: list[str], curr: str, nxt: list[str]) -> dict[str, Any]:
    data = {"prev": prev, "curr": curr, "next": nxt, "actor": "g"}
    return {"id": tid, "type": "status", "status": status, "data": data}


def _bodies(ids: list[str], per: int) -> list[bytes]:
    out: list[bytes] = []
    for i in range(0, len(ids), per):
        group = ids[i : i + per]
        first = [
            _event(t, s, [], "g", ["probe"]) for t in group for s in ("received", "processing")
        ]
        out.append(json.dumps(first).encode())
        out.append(json.dumps([_event(t, "completed", ["g"], "probe", []) for t in group]).encode())
    return out


async def gateway(n: int, per: int, tmp: Path, payload_bytes: int = 0) -> float:
    async def enqueue(queue: str, body: bytes) -> None:
        pass

    app = create_app(GatewayConfig(), enqueue=enqueue, database_url=f"sqlite:///{tmp}/gw.db")
    async with app.router.lifespan_context(app):
        ids = []
        create: dict[str, Any] = {"route": ["g", "probe"]}
        if payload_bytes:
            create["payload"] = {"text": "x" * payload_bytes}
        create_body = json.dumps(create).encode()
        for _ in range(n):
            code, body = await _call(app, "POST", "/api/v1/mesh", create_body)
            assert code == 201, body
            ids.append(json.loads(body)["id"])
        bodies = _bodies(ids, per)
        c0 = time.process_time()
        for b in bodies:
            code, answer = await _call(app, "POST", "/api/v1/mesh/events", b)
            assert code == 204, answer
        return (time.process_time() - c0) * 1e6 / n


class _Ev(msgspec.Struct):
    id: str
    status: str
    data: dict[str, Any]


def floor(n: int, per: int, tmp: Path) -> float:
    db = sqlite3.connect(tmp / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, status TEXT, doc BLOB)")
    ids = [f"t{i}" for i in range(n)]
    db.executemany("INSERT INTO tasks VALUES (?, 'pending', '{}')", [(i,) for i in ids])
    bodies = _bodies(ids, per)
    decoder = msgspec.json.Decoder(list[_Ev])
    c0 = time.process_time()
    for b in bodies:
        events = decoder.decode(b)
        db.execute("BEGIN IMMEDIATE")
        for e in events:
            doc = msgspec.json.encode({"status": e.status, **e.data})
            db.execute("UPDATE tasks SET status = ?, doc = ? WHERE id = ?", (e.status, doc, e.id))
        db.execute("COMMIT")
    took = time.process_time() - c0
    db.close()
    return took * 1e6 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer tasks; a few seconds")
    ap.add_argument(
        "--payload",
        type=int,
        default=0,
        metavar="BYTES",
        help="each task's input payload size; the floor stays the same small rows",
    )
    args = ap.parse_args()
    n = 800 if args.quick else 4000
    out: dict[str, Any] = {}
    for per in (1, 4, 16):
        with tempfile.TemporaryDirectory(prefix="asya-ingest-") as tmp:
            gw = anyio.run(gateway, n, per, Path(tmp), args.payload)
            fl = floor(n, per, Path(tmp))
        out[f"tasks_per_post_{per}"] = {
            "gateway_us_per_task": round(gw, 1),
            "floor_us_per_task": round(fl, 1),
            "ratio": round(gw / fl, 2),
        }
    print(json.dumps(out, indent=2))
    for k, v in out.items():
        print(
            f"{k}: gateway ingest {v['gateway_us_per_task']} us CPU per task"
            f" vs floor {v['floor_us_per_task']} us ({v['ratio']}x)"
        )


if __name__ == "__main__":
    main()
