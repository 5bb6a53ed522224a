"""The A2A front door (protocol v1.0 with v0.3 compatibility) over the gateway's `TaskService`."""

from .door import A2ADoor, DoorConfig, a2a_routes

__all__ = ["A2ADoor", "DoorConfig", "a2a_routes"]
