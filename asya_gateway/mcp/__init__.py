"""The MCP front door: every MCP flow is a tool, its FLYs arrive as live progress."""

from .core import TASK_ID_META, ArgumentsRefused, ToolCatalog, ToolSchemaError
from .server import McpDoor, mcp_app

__all__ = [
    "TASK_ID_META",
    "ArgumentsRefused",
    "McpDoor",
    "ToolCatalog",
    "ToolSchemaError",
    "mcp_app",
]
