"""Transitional alias of `runner` for `cli.py` (owned elsewhere): delete once it imports runner."""

from __future__ import annotations

from .runner import run_sidecar

__all__ = ["run_sidecar"]
