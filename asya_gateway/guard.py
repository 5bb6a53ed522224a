"""The gateway's door guard (gateway.md "Who may do what"): which endpoint needs which caller.

`access` is pure (method, path, listener → what the endpoint needs); `Guard` is the ASGI shell
around the whole app: it authenticates each HTTP request with `ClientAuth` / `MeshAuth`, answers
401 in the protocol's own shape (REST JSON, A2A JSON-RPC, MCP's `WWW-Authenticate: Bearer`), and
otherwise runs the request with its `Principal` in `current_principal` (the engine reads it to
stamp and check task owners) and in `scope["asya.principal"]` (the MCP SDK runs handlers in its
own tasks, so the MCP door reads it from there).
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import OPEN, AuthFailure, ClientAuth, MeshAuth, Principal, current_principal
from .eventstream import PATH as EVENTS_PATH

Access = Literal["public", "client", "mesh", "preflight", "absent"]

_SEG: Final = r"[^/]+"
_MESH_POST: Final = re.compile(
    rf"^(/api/v1/mesh/events|/api/v1/mesh/{_SEG}/events|/mesh/{_SEG}/(fly|progress|final))$"
)
_TASK: Final = re.compile(rf"^/api/v1/mesh/{_SEG}/?$")
_CARDS: Final = re.compile(
    rf"^(/\.well-known/agent-card\.json|/\.well-known/agent\.json"
    rf"|/a2a/{_SEG}/\.well-known/agent-card\.json)$"
)
_encoder: Final = msgspec.json.Encoder()


def access(method: str, path: str, *, mesh_listener: bool = False, split: bool = False) -> Access:
    """What a request needs. `mesh_listener`: it came in on `--mesh-port`; `split`: a mesh
    port exists, so the client listener serves no sidecar endpoint."""
    if path == "/health":
        return "public"
    sidecar = (method == "POST" and _MESH_POST.match(path) is not None) or (
        method == "GET" and path == "/api/v1/mesh/feed"
    )
    task_get = method == "GET" and _TASK.match(path) is not None and not sidecar
    if mesh_listener:
        return "mesh" if sidecar or task_get else "absent"
    if sidecar:
        return "absent" if split else "mesh"
    if task_get:
        return "client" if split else "preflight"
    if method == "GET" and (path in ("/", "/index.html") or _CARDS.match(path)):
        return "public"
    return "client"


class Listeners:
    """Which local port is the mesh listener (`--mesh-port`): the CLI sets the port it bound."""

    def __init__(self, mesh_port: int | None = None) -> None:
        self.mesh_port = mesh_port


class Guard:
    """ASGI middleware: every HTTP request passes `access` and the credential checks first."""

    def __init__(
        self, app: ASGIApp, *, clients: ClientAuth, mesh: MeshAuth, listeners: Listeners
    ) -> None:
        self.app = app
        self.clients = clients
        self.mesh = mesh
        self.listeners = listeners

    @property
    def mesh_port(self) -> int | None:
        return self.listeners.mesh_port

    def decide(self, scope: Scope, method: str | None = None) -> Principal | AuthFailure | None:
        """The caller, why it is refused, or None: no such endpoint on this listener.
        `method`: the request's unless given (a WebSocket upgrade is judged as a POST)."""
        server = scope.get("server") or ("", None)
        split = self.mesh_port is not None
        on_mesh = split and server[1] == self.mesh_port
        method = method or scope["method"]
        need = access(method, scope["path"], mesh_listener=on_mesh, split=split)
        if need == "absent":
            return None
        if need == "public":
            return OPEN
        headers: dict[str, str] = {}
        for k, v in scope.get("headers") or ():
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        if need == "mesh":
            if on_mesh and not self.mesh.enabled:
                return OPEN  # a mesh port with no token: as open as the mesh endpoints are
            return self.mesh.check(headers)
        if need == "preflight" and self.mesh.is_mesh(headers):
            return self.mesh.check(headers)
        return self.clients.authenticate(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            # Only the sidecars' event stream speaks it, on the terms of the POST it stands for;
            # a close before the accept is answered 403 (no body: a WebSocket client sees none).
            if scope["path"] != EVENTS_PATH:
                await send({"type": "websocket.close", "code": 1008})
                return
            decision = self.decide(scope, method="POST")
            if decision is None or isinstance(decision, AuthFailure):
                await send({"type": "websocket.close", "code": 1008})
                return
        elif kind != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        else:
            decision = self.decide(scope)
            if decision is None:
                await _reply(send, 404, {"error": "not found"})
                return
            if isinstance(decision, AuthFailure):
                await _refuse(scope["path"], send, decision.message)
                return
        scope["asya.principal"] = decision
        token = current_principal.set(decision)
        try:
            await self.app(scope, receive, send)
        finally:
            current_principal.reset(token)


async def _refuse(path: str, send: Send, message: str) -> None:
    """HTTP 401 in the shape of the protocol the path belongs to."""
    if path == "/a2a" or path.startswith("/a2a/"):
        # JSON-RPC has no id to echo before the body is read: `null`, as for a parse error.
        body: object = {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32000, "message": f"unauthenticated: {message}"},
        }
    elif path == "/mcp" or path.startswith("/mcp/"):
        body = {"error": "invalid_token", "error_description": message}  # RFC 6750, as the SDK
    else:
        body = {"error": message}
    desc = message.replace('"', "'")
    challenge = f'Bearer realm="asya-gateway", error="invalid_token", error_description="{desc}"'
    await _reply(send, 401, body, [(b"www-authenticate", challenge.encode())])


async def _reply(
    send: Send, status: int, body: object, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = _encoder.encode(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


__all__ = ["Access", "Guard", "Listeners", "access", "current_principal"]
