"""Console-script entry points that check their extra first: one line, not a traceback.

`pip install asya-mesh` (no extras) installs every command; `asya-sidecar`, `asya-gateway` and
`asya` need packages from an extra, so each imports them here first and, if one is missing,
says which extra to install and exits 2. Stdlib only until the command itself is imported.
`asya image ...` needs no extra: image building is the standard library and an engine.
"""

from __future__ import annotations

import importlib
import sys
from typing import Final

__all__ = ["NEEDS", "asya", "gateway", "sidecar"]

_SIDECAR: Final = ("httpx", "aiohttp", "structlog", "prometheus_client")
NEEDS: Final = {
    "asya-sidecar": ("sidecar", _SIDECAR),
    "asya-gateway": ("gateway", (*_SIDECAR, "starlette", "uvicorn", "websockets")),
    "asya": ("gateway", (*_SIDECAR, "starlette", "uvicorn", "websockets", "rich")),
}


def _require(command: str) -> None:
    extra, modules = NEEDS[command]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            print(
                f"{command} needs the {extra} extra: pip install 'asya-mesh[{extra}]' "
                f"(missing: {name})",
                file=sys.stderr,
            )
            raise SystemExit(2) from None


def sidecar() -> int:
    """`asya-sidecar`."""
    _require("asya-sidecar")
    from asya_sidecar.cli import main

    return main()


def gateway() -> int:
    """`asya-gateway`."""
    _require("asya-gateway")
    from asya_gateway.cli import main

    return main()


def asya() -> int:
    """`asya` (`asya dev`, ...)."""
    if sys.argv[1:2] == ["image"]:
        # Straight to the stdlib-only image command: `asya_dev.cli` imports the gateway's
        # packages, which a machine that only builds images need not have.
        from asya_dev.image import main as image_main

        return image_main(sys.argv[2:])
    _require("asya")
    from asya_dev.cli import main

    return main()
