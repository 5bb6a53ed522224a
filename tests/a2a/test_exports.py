"""Public names of the A2A door stay what `__all__` says."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "asya_gateway.a2a",
    "asya_gateway.a2a.cards",
    "asya_gateway.a2a.door",
    "asya_gateway.a2a.model",
    "asya_gateway.a2a.replay",
    "asya_gateway.a2a.rpc",
    "asya_gateway.a2a.stream",
    "asya_gateway.a2a.translate",
    "asya_gateway.a2a.view",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_matches_public_names(name: str) -> None:
    mod = importlib.import_module(name)
    assert mod.__doc__, f"{name} has a one-line docstring"
    assert all(hasattr(mod, n) for n in mod.__all__)
