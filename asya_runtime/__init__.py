"""asya_runtime: run a handler behind the Unix socket, speaking asya-abi/1.

Layout (the data path): `wire` (frame Structs, shared with the sidecar) → `codec` (bytes ⇄
frames, sans-IO) → `paths`, `jsonable`, `abi` (pure ABI step) → `driver` (one invocation, any
handler kind) → `server` (anyio shell, with `outbox` for writes and `socketfile` for the
socket file) → `cli`. `loader` turns a spec into a handler, `connection` is a connection's
whole lifecycle as one state table, `client` a tiny blocking client, and `testing` the public
helpers for handler authors.
"""

__version__ = "0.1.0"

from .errors import AbiError, HandlerLoadError
from .loader import HandlerKind, LoadedHandler, load_handler

__all__ = [
    "AbiError",
    "HandlerKind",
    "HandlerLoadError",
    "LoadedHandler",
    "__version__",
    "load_handler",
]
