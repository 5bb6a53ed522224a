"""The local gateway: task API, event ingest from sidecars, SSE client streams, web page."""

from .app import create_app
from .config import GatewayConfig
from .engine import TaskEngine
from .tasks import TaskRegistry

__all__ = ["GatewayConfig", "TaskEngine", "TaskRegistry", "create_app"]
