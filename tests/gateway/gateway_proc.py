"""A real gateway process for tests: `python -m tests.gateway.gateway_proc PORT DATABASE_URL`.

Serves `create_app` with the embedded queue (ASYA_SQLITE_PATH, ASYA_NAMESPACE from the env) and
the given store, until killed. Stands in for `asya-gateway run --database-url` until the CLI
exposes that option.
"""

from __future__ import annotations

import os
import sys

import uvicorn

from asya_gateway import GatewayConfig, create_app
from asya_mesh.transports import TransportConfig


def main() -> None:
    port, url = int(sys.argv[1]), sys.argv[2]
    wait = float(os.environ.get("ASYA_TEST_TERMINAL_WAIT", "1.0"))
    config = GatewayConfig(
        port=port,
        public_url=os.environ.get("ASYA_GATEWAY_PUBLIC_URL") or None,
        transport=TransportConfig.from_env(os.environ),
    )
    app = create_app(config, database_url=url, terminal_wait_seconds=wait)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
