"""docs/configuration.md's tables are generated from the configuration Structs; this test
fails when they disagree. Regenerate with `python -m tests.cli.test_docs`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import msgspec

from asya_dev.options import DevSettings
from asya_gateway.config import GatewayConfig
from asya_mesh.transports import TransportConfig
from asya_runtime.cli import RuntimeConfig
from asya_runtime.settings import options
from asya_runtime.settings_cli import markdown_table
from asya_sidecar.config import SidecarConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
_TRANSPORT = tuple(f"transport_{o.dest}" for o in options(TransportConfig))
TABLES: dict[str, tuple[type[msgspec.Struct], tuple[str, ...]]] = {
    "transport": (TransportConfig, ()),
    "asya-sidecar run": (SidecarConfig, _TRANSPORT),
    "asya-gateway run": (GatewayConfig, _TRANSPORT),
    "asya-runtime run": (RuntimeConfig, ()),
    "asya dev": (DevSettings, ("transport",)),
}
_BLOCK = re.compile(r"(<!-- BEGIN (?P<name>[^>]+?) -->\n)(?P<body>.*?)(<!-- END -->)", re.S)


def rendered(text: str) -> str:
    """`text` with every generated block replaced by the table its Struct gives today."""

    def table(m: re.Match[str]) -> str:
        cls, skip = TABLES[m.group("name")]
        return m.group(1) + markdown_table(cls, skip=skip) + m.group(4)

    return _BLOCK.sub(table, text)


def test_every_table_is_in_the_doc_and_matches_the_structs() -> None:
    text = DOC.read_text()
    assert sorted(m.group("name") for m in _BLOCK.finditer(text)) == sorted(TABLES)
    assert text == rendered(text), "docs/configuration.md is stale: python -m tests.cli.test_docs"


if __name__ == "__main__":
    DOC.write_text(rendered(DOC.read_text()))
    sys.exit(0)
