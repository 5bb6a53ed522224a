"""The package's public names are exactly its `__all__`, and each resolves."""

from __future__ import annotations

import asya_sidecar


def test_all_names_resolve() -> None:
    assert asya_sidecar.__all__ == ["SidecarConfig"]
    for name in asya_sidecar.__all__:
        assert getattr(asya_sidecar, name) is not None
