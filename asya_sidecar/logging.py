"""structlog setup for the sidecar: JSON lines unless on a TTY (`ASYA_LOG_FORMAT` overrides).

Below DEBUG an expected failure is one line: a logged exception becomes `error="Type: message"`
instead of a traceback (ASYA_LOG_LEVEL=DEBUG keeps the traceback).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "quiet_broker_clients"]


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


def quiet_broker_clients(level: str) -> None:
    """Below DEBUG, the broker clients' own log lines (aio-pika, aiormq, botocore) are
    silenced: the CLI reports their failures itself, in one line."""
    if level.upper() != "DEBUG":
        for name in ("aio_pika", "aiormq", "botocore", "aiobotocore"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


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
    quiet_broker_clients(name)
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
