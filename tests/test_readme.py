"""The README's Python examples run as written (docs that drift from the code fail here)."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def test_readme_python_blocks_run() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2, "the README shows a handler and how to test it"
    exec(compile("\n".join(blocks), "README.md", "exec"), {})
