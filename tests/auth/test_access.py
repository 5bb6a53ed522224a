"""The guard's pure table: which endpoint needs which caller, on which listener."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_gateway.guard import access

CASES = [
    # method, path, (open split off, client listener with split, mesh listener)
    ("GET", "/health", ("public", "public", "public")),
    ("GET", "/", ("public", "public", "absent")),
    ("GET", "/.well-known/agent-card.json", ("public", "public", "absent")),
    ("GET", "/.well-known/agent.json", ("public", "public", "absent")),
    ("GET", "/a2a/chat/.well-known/agent-card.json", ("public", "public", "absent")),
    ("POST", "/a2a", ("client", "client", "absent")),
    ("POST", "/a2a/chat", ("client", "client", "absent")),
    ("POST", "/mcp", ("client", "client", "absent")),
    ("POST", "/api/v1/mesh", ("client", "client", "absent")),
    ("GET", "/api/v1/flows", ("client", "client", "absent")),
    ("GET", "/api/v1/stats", ("client", "client", "absent")),
    ("GET", "/api/v1/mesh/t1", ("preflight", "client", "mesh")),
    ("DELETE", "/api/v1/mesh/t1", ("client", "client", "absent")),
    ("POST", "/api/v1/mesh/t1/resume", ("client", "client", "absent")),
    ("GET", "/stream/t1", ("client", "client", "absent")),
    ("GET", "/api/v1/mesh/t1/events", ("client", "client", "absent")),
    ("GET", "/mesh/t1/stream", ("client", "client", "absent")),
    ("POST", "/api/v1/mesh/t1/events", ("mesh", "absent", "mesh")),
    ("POST", "/mesh/t1/fly", ("mesh", "absent", "mesh")),
    ("POST", "/mesh/t1/progress", ("mesh", "absent", "mesh")),
    ("POST", "/mesh/t1/final", ("mesh", "absent", "mesh")),
    ("GET", "/api/v1/mesh/feed", ("mesh", "absent", "mesh")),
]


@pytest.mark.parametrize(("method", "path", "want"), CASES)
def test_access_table(method: str, path: str, want: tuple[str, str, str]) -> None:
    got = (
        access(method, path),
        access(method, path, split=True),
        access(method, path, mesh_listener=True, split=True),
    )
    assert got == want


@given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "HEAD"]), path=st.text(max_size=60))
def test_anything_else_needs_a_client_credential(method: str, path: str) -> None:
    need = access(method, "/" + path)
    known_public = {"/health", "/", "/index.html"}
    if need == "public":
        assert method == "GET"
        assert "/" + path in known_public or path.endswith(("agent-card.json", "agent.json"))
    assert access(method, "/" + path, mesh_listener=True, split=True) in (
        "public",
        "mesh",
        "absent",
    )
