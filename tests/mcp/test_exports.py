"""The MCP door's public names stay what `__all__` says (httpx's exported-members test)."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = ["asya_gateway.mcp", "asya_gateway.mcp.core", "asya_gateway.mcp.server"]


@pytest.mark.parametrize("name", MODULES)
def test_all_matches_public_names(name: str) -> None:
    mod = importlib.import_module(name)
    exported = set(mod.__all__)
    assert all(hasattr(mod, n) for n in exported)
    # Every public name defined here is exported (imports from elsewhere are not).
    own = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_")
        and (inspect.isclass(v) or inspect.isfunction(v))
        and v.__module__ == mod.__name__
    }
    assert own <= exported, own - exported


def test_package_exports() -> None:
    import asya_gateway.mcp

    assert set(asya_gateway.mcp.__all__) == {
        "TASK_ID_META",
        "ArgumentsRefused",
        "McpDoor",
        "ToolCatalog",
        "ToolSchemaError",
        "mcp_app",
    }
