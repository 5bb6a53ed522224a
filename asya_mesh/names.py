"""Actor and queue names: the one rule for what an actor may be called, used everywhere.

Upstream Asya names queues `asya-{namespace}-{actor}`; actors become Kubernetes objects and
broker queue names, so a name is 1-63 characters of letters, digits, `_`, `.` and `-`, starting
with a letter or digit (no spaces, no slashes). Pure.
"""

from __future__ import annotations

import re
from typing import Final

ACTOR_NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
NAMESPACE_PATTERN: Final = ACTOR_NAME_PATTERN


def validate_actor_name(name: str) -> str:
    """`name` if it is a valid actor name; else ValueError saying what is wrong."""
    if not isinstance(name, str) or not ACTOR_NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid actor name {name!r}: 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_namespace(name: str) -> str:
    """`name` if it is a valid namespace (same rule as actor names); else ValueError."""
    if not isinstance(name, str) or not NAMESPACE_PATTERN.match(name):
        raise ValueError(
            f"invalid namespace {name!r}: 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def queue_name(namespace: str, actor: str) -> str:
    """Upstream Asya's queue name for an actor: `asya-{namespace}-{actor}`."""
    return f"asya-{namespace}-{actor}"


__all__ = [
    "ACTOR_NAME_PATTERN",
    "queue_name",
    "validate_actor_name",
    "validate_namespace",
]
