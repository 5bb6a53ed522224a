"""Terminal rendering of a task's client stream for `asya dev --prompt`.

On a terminal the screen has two parts: lines (stage FLYs, status changes, messages) scroll
above, and a live area below (rich's `Live`) holds the token line being written and the
progress bar, so tokens and bars from one handler never break each other's lines. Into a file
or pipe, tokens are appended inline and bars print as lines. The terminal update prints the
result; `message` puts any error on a line of its own. `SseParser` turns the stream's lines
into events. Knows SSE events and a text stream, nothing about HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

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

    def __init__(self, out: TextIO, *, tty: bool | None = None, width: int | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self._inline = False  # (no tty) a token line or bar is open and needs a newline first
        self._bar_open = False
        self._last_status: tuple[str, str | None] | None = None
        self.final: dict[str, Any] | None = None
        self.tokens: list[str] = []
        # The live area (tty only): the token line being written and the progress bar.
        self._console = (
            Console(file=out, force_terminal=True, highlight=False, width=width)
            if self.tty
            else None
        )
        self._live: Live | None = None
        self._token_line = ""
        self._bar = ""

    # -- the live area (tty) ---------------------------------------------------------------

    def _area(self) -> Group:
        parts = [Text(t) for t in (self._token_line, self._bar) if t]
        return Group(*parts)

    def _redraw(self) -> None:
        assert self._console is not None
        if self._live is None:
            self._live = Live(
                self._area(),
                console=self._console,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
                vertical_overflow="visible",
            )
            self._live.start()
        self._live.update(self._area(), refresh=True)

    def close(self) -> None:
        """End the live area (its token line and bar stay on screen) or the open line."""
        if self._live is not None:
            self._live.update(self._area(), refresh=True)
            self._live.stop()
            self._live = None
            self._token_line = self._bar = ""
        elif self._inline or self._bar_open:
            self.out.write("\n")
            self._inline = self._bar_open = False
        self.out.flush()

    def message(self, text: str) -> None:
        """A line of its own (an error, a notice), after whatever was being written."""
        self.close()
        self.out.write(text + "\n")
        self.out.flush()

    def _line(self, text: str) -> None:
        if self._console is not None:
            if self._live is not None:  # above the live area, which stays as it is
                self._console.print(Text(text))
                self._redraw()
            else:
                self._console.print(Text(text))
            return
        if self._inline or self._bar_open:
            self.out.write("\n")
        self._inline = self._bar_open = False
        self.out.write(text + "\n")
        self.out.flush()

    def event(self, name: str, data: Any) -> None:
        if name == "update" and isinstance(data, dict):
            self._update(data)
        elif isinstance(data, dict):
            self._fly(data)

    def _fly(self, fly: dict[str, Any]) -> None:
        if isinstance(fly.get("text"), str) and fly.get("partial", True) is not False:
            self.tokens.append(fly["text"])
            self._token(fly["text"])
        elif fly.get("type") == "progress":
            self._progress(fly)
        elif "stage" in fly:
            self._line(f"» {fly['stage']}: {fly.get('message', '')}".rstrip(": "))
        else:
            self._line("» " + json.dumps(fly))

    def _token(self, text: str) -> None:
        if self._console is None:
            if self._bar_open:
                self.out.write("\n")
                self._bar_open = False
            self.out.write(text)  # inline: the token appears the moment it arrives
            self.out.flush()
            self._inline = True
            return
        *done, self._token_line = (self._token_line + text).split("\n")
        for line in done:  # finished lines scroll up; the live area keeps the open one
            self._console.print(Text(line))
        self._redraw()

    def _progress(self, fly: dict[str, Any]) -> None:
        try:
            percent = max(0.0, min(100.0, float(fly.get("percent", 0))))
        except (TypeError, ValueError):
            percent = 0.0
        filled = round(percent / 100 * _BAR)
        bar = f"[{'#' * filled}{'.' * (_BAR - filled)}] {percent:5.1f}%  {fly.get('message', '')}"
        if self._console is not None:
            self._bar = bar.rstrip()
            self._redraw()
        else:
            self._line(bar.rstrip())

    def _update(self, u: dict[str, Any]) -> None:
        status = str(u.get("status"))
        if status in TERMINAL:
            self.final = u
            self.close()
            if self._console is None:
                self.out.write("\n")
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
            self._line(f"· {status}{where} ({u.get('progress_percent', 0):.0f}%)")


__all__ = ["SseEvent", "SseParser", "TerminalRenderer"]
