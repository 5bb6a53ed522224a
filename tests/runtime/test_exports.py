"""Public names stay what `__all__` says (httpx's exported-members test)."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "asya_runtime",
    "asya_runtime.testing",
    "asya_runtime.abi",
    "asya_runtime.paths",
    "asya_runtime.loader",
    "asya_runtime.driver",
    "asya_runtime.server",
    "asya_runtime.client",
    "asya_runtime.jsonable",
    "asya_runtime.connection",
    "asya_runtime.outbox",
    "asya_runtime.socketfile",
    "asya_runtime.slots",
    "asya_runtime.cli",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_matches_public_names(name: str) -> None:
    mod = importlib.import_module(name)
    exported = set(mod.__all__)
    assert all(hasattr(mod, n) for n in exported)


def test_top_level_exports() -> None:
    import asya_runtime

    assert set(asya_runtime.__all__) == {
        "AbiError",
        "HandlerKind",
        "HandlerLoadError",
        "LoadedHandler",
        "__version__",
        "load_handler",
    }
