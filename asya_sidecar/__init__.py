"""The asya-mesh sidecar: queue in, runtime over a Unix socket, queues and gateway out."""

from __future__ import annotations

from .config import SidecarConfig

__all__ = ["SidecarConfig"]
