"""A tiny terminal emulator for tests: what a screen shows after the renderer's output.

Understands what `TerminalRenderer` (rich's Live) writes: text, CR, LF, erase line, cursor
up, and ignores colours and cursor visibility.
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[(\??)([0-9;]*)([A-Za-z])")


def screen(output: str) -> list[str]:
    """The lines on screen (trailing blanks dropped) after `output` was written."""
    lines: list[str] = [""]
    row = col = 0
    i = 0
    while i < len(output):
        ch = output[i]
        if ch == "\x1b":
            m = _CSI.match(output, i)
            assert m is not None, repr(output[i : i + 10])
            private, arg, cmd = m.groups()
            n = int(arg or "1") if arg.isdigit() else 1
            if not private and cmd == "A":
                row = max(0, row - n)
            elif not private and cmd == "K":
                lines[row] = lines[row][:col] if arg in ("", "0") else ""
            i = m.end()
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1 :]
            col += 1
        i += 1
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.rstrip() for line in lines]
