"""Terminal rendering of a task's client stream for `asya dev --prompt`.

Tokens are appended inline as they arrive, progress FLYs drive a progress bar, stage FLYs and
status changes print as lines, and the terminal update prints the result. `SseParser` turns
the stream's lines into events. Knows SSE events and a text stream, nothing about HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, TextIO

TERMINAL: Final = frozenset({"succeeded", "failed", "canceled"})
_BAR: Final = 24


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None = None


class SseParser:
    """Incremental SSE line parser: `feed(line)` yields each event as it completes."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> Iterator[SseEvent]:
        if line == "":
            if self._data:
                yield SseEvent(self._event, "\n".join(self._data), self._id)
            self._event, self._data, self._id = "message", [], None
            return
        if line.startswith(":"):
            return  # comment (keepalive)
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            self._event = value
        elif key == "data":
            self._data.append(value)
        elif key == "id":
            self._id = value


class TerminalRenderer:
    """Writes a readable, incremental view of one task to `out`."""

    def __init__(self, out: TextIO, *, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self._inline = False  # a token line (or bar) is open and needs a newline first
        self._bar_open = False
        self._last_status: tuple[str, str | None] | None = None
        self.final: dict[str, Any] | None = None
        self.tokens: list[str] = []

    def _line(self, text: str) -> None:
        if self._inline or self._bar_open:
            self.out.write("\n")
        self._inline = self._bar_open = False
        self.out.write(text + "\n")
        self.out.flush()

    def _dim(self, text: str) -> str:
        return f"\x1b[2m{text}\x1b[0m" if self.tty else text

    def event(self, name: str, data: Any) -> None:
        if name == "update" and isinstance(data, dict):
            self._update(data)
        elif isinstance(data, dict):
            self._fly(data)

    def _fly(self, fly: dict[str, Any]) -> None:
        if isinstance(fly.get("text"), str) and fly.get("partial", True) is not False:
            if self._bar_open:
                self.out.write("\n")
                self._bar_open = False
            self.tokens.append(fly["text"])
            self.out.write(fly["text"])  # inline: the token appears the moment it arrives
            self.out.flush()
            self._inline = True
        elif fly.get("type") == "progress":
            self._progress(fly)
        elif "stage" in fly:
            self._line(self._dim(f"» {fly['stage']}: {fly.get('message', '')}".rstrip(": ")))
        else:
            self._line(self._dim("» " + json.dumps(fly)))

    def _progress(self, fly: dict[str, Any]) -> None:
        try:
            percent = max(0.0, min(100.0, float(fly.get("percent", 0))))
        except (TypeError, ValueError):
            percent = 0.0
        filled = round(percent / 100 * _BAR)
        bar = f"[{'#' * filled}{'.' * (_BAR - filled)}] {percent:5.1f}%  {fly.get('message', '')}"
        if self.tty:
            if self._inline:
                self.out.write("\n")
                self._inline = False
            self.out.write("\r\x1b[2K" + bar)  # redraw the bar in place
            self._bar_open = True
            self.out.flush()
        else:
            self._line(bar.rstrip())

    def _update(self, u: dict[str, Any]) -> None:
        status = str(u.get("status"))
        if status in TERMINAL:
            self.final = u
            self._line("")
            mark = {"succeeded": "✔", "failed": "✘", "canceled": "⊘"}[status]
            self.out.write(f"{mark} {status}  (task {u.get('id')})\n")
            if "result" in u:
                self.out.write("result: " + json.dumps(u["result"], indent=2) + "\n")
            if "error" in u:
                self.out.write(f"error: {u['error']}\n")
            self.out.flush()
            return
        key = (status, u.get("actor"))
        if key != self._last_status:  # one line per status / actor change, not per report
            self._last_status = key
            where = f" in {u['actor']}" if u.get("actor") else ""
            self._line(self._dim(f"· {status}{where} ({u.get('progress_percent', 0):.0f}%)"))


__all__ = ["SseEvent", "SseParser", "TerminalRenderer"]
