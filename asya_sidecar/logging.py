"""structlog setup for the sidecar: JSON lines unless on a TTY (`ASYA_LOG_FORMAT` overrides).

Below DEBUG an expected failure is one line: a logged exception becomes `error="Type: message"`
instead of a traceback (ASYA_LOG_LEVEL=DEBUG keeps the traceback).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

__all__ = ["configure_logging", "redact_url"]


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _one_line_errors(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    exc = event.pop("exc_info", None)
    if exc:
        if exc is True:
            exc = sys.exc_info()[1]
        elif isinstance(exc, tuple):
            exc = exc[1]
        if isinstance(exc, BaseException):
            event.setdefault("error", f"{type(exc).__name__}: {exc}")
    return event


def configure_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Configure structlog once (called by `cli.py` only). `fmt`: console | json | None=auto."""
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    name = level.upper()
    lvl = logging.getLevelName("WARNING" if name == "WARN" else name)
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    exc_step: structlog.types.Processor = (
        structlog.processors.format_exc_info if lvl == logging.DEBUG else _one_line_errors
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            exc_step,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl if isinstance(lvl, int) else 20),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
