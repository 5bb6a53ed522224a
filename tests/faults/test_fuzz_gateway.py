"""Fuzz every gateway endpoint that takes a body or an id, against one gateway process.

Invariant: every request gets a 2xx or a 4xx with a JSON body naming the problem (never a
5xx, except 503 "too many tasks", which names itself), and the gateway keeps serving.
"""

from __future__ import annotations

import collections
import time
import urllib.parse

import anyio
import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

from .conftest import transport_env
from .knobs import FUZZ_BATCH, FUZZ_RUNS, SEED
from .procs import Mesh, QueueClient
from .results import Recorder
from .test_fuzz_runtime import json_values

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ENDPOINTS = [
    ("POST", "/api/v1/mesh"),
    ("POST", "/api/v1/mesh/{id}/events"),
    ("POST", "/mesh/{id}/fly"),
    ("POST", "/mesh/{id}/progress"),
    ("POST", "/mesh/{id}/final"),
    ("GET", "/api/v1/mesh/{id}"),
    ("DELETE", "/api/v1/mesh/{id}"),
]

event = st.fixed_dictionaries(
    {"type": st.sampled_from(["fly", "status", "bogus", ""]) | json_values},
    optional={
        "status": st.sampled_from(
            [
                "received",
                "processing",
                "completed",
                "succeeded",
                "failed",
                "paused",
                "canceled",
                "weird",
            ]
        )
        | json_values,
        "data": json_values,
    },
)
create = st.fixed_dictionaries(
    {},
    optional={
        "route": st.lists(st.text(max_size=12), max_size=3) | json_values,
        "payload": json_values,
        "headers": st.dictionaries(st.text(max_size=8), json_values, max_size=3) | json_values,
        "timeout": st.floats(allow_nan=False) | json_values,
    },
)
body = st.one_of(
    st.binary(max_size=400),
    json_values.map(msgspec.json.encode),
    event.map(msgspec.json.encode),
    st.lists(event, max_size=4).map(msgspec.json.encode),
    create.map(msgspec.json.encode),
)


def test_gateway_survives_fuzzed_requests(mesh: Mesh, recorder: Recorder) -> None:
    t = transport_env("sqlite", mesh.root)
    gateway, url = anyio.run(mesh.gateway, t.env)

    async def declare() -> None:  # the test plays a's sidecar: its queue must exist
        async with QueueClient(t.config) as q:
            await q.declare("a")

    anyio.run(declare)
    statuses: collections.Counter[str] = collections.Counter()
    t0 = time.monotonic()
    tried = [0]
    with httpx.Client(base_url=url, timeout=10) as http:
        known = [
            http.post("/api/v1/mesh", json={"route": ["a"], "payload": i}).json()["id"]
            for i in range(5)
        ]

        request = st.tuples(
            st.sampled_from(ENDPOINTS),
            st.sampled_from(known) | st.text(min_size=1, max_size=40),
            body,
            st.sampled_from(["application/json", "text/plain", "", "application/x-junk"]),
        )

        @settings(
            max_examples=FUZZ_RUNS,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(batch=st.lists(request, min_size=FUZZ_BATCH, max_size=FUZZ_BATCH))
        def many(batch: list[tuple[tuple[str, str], str, bytes, str]]) -> None:
            for req in batch:
                one(*req)
                tried[0] += 1

        def one(endpoint: tuple[str, str], task_id: str, content: bytes, ctype: str) -> None:
            method, path = endpoint
            path = path.replace("{id}", urllib.parse.quote(task_id, safe=""))
            headers = {"content-type": ctype} if ctype else {}
            r = http.request(
                method, path, content=content if method == "POST" else None, headers=headers
            )
            statuses[f"{method} {endpoint[1]} -> {r.status_code}"] += 1
            if r.status_code == 503:
                assert "too many" in r.text.lower(), r.text
                return
            what = f"{method} {path} {content[:200]!r}: {r.status_code} {r.text}"
            assert r.status_code < 500, what
            if r.status_code >= 400:
                # Ours are JSON {"error": ...}; Starlette's router answers plain "Not Found".
                assert r.text.strip(), f"{r.status_code} without a reason"

        try:
            hseed(SEED)(many)()
        except BaseException:
            print("gateway output:\n", gateway.output()[-5000:])
            raise
        assert gateway.alive, gateway.output()[-3000:]
        assert http.get("/health").status_code == 200
        r = http.post("/api/v1/mesh", json={"route": ["a"], "payload": "still fine"})
        assert r.status_code == 201, r.text
        assert http.get(f"/api/v1/mesh/{r.json()['id']}").status_code == 200
    codes = collections.Counter(k.rsplit(" ", 1)[-1] for k in statuses.elements())
    recorder.row(
        "fuzz",
        "gateway: random bodies/ids/content types to every body- or id-taking endpoint",
        tried[0],
        f"no 5xx; every 4xx names the problem; gateway kept serving (status codes {dict(codes)})",
        by_endpoint=dict(statuses),
        seconds=round(time.monotonic() - t0, 1),
    )
