"""structlog setup for the sidecar: JSON lines unless on a TTY (`ASYA_LOG_FORMAT` overrides)."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Configure structlog once (called by `cli.py` only). `fmt`: console | json | None=auto."""
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    lvl = logging.getLevelName(
        level.upper().replace("WARN", "WARNING").replace("WARNINGING", "WARNING")
    )
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl if isinstance(lvl, int) else 20),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
