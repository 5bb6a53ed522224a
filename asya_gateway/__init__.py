"""The local gateway: task API, event ingest from sidecars, SSE client streams, web page."""

from .app import create_app
from .config import GatewayConfig
from .tasks import TaskRegistry

__all__ = ["GatewayConfig", "TaskRegistry", "create_app"]
