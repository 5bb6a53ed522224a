"""Render the fault suite's figures (tests/faults/.results/*.json) as the table of
docs/reliability.md.

    python -m tests.faults.render                 # print the markdown
    python -m tests.faults.render --write docs/reliability.md
                                                  # replace the part between the markers
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .results import RESULTS_DIR

BEGIN = "<!-- fault-figures:begin -->"
END = "<!-- fault-figures:end -->"
AREAS = ["crash", "hang", "shutdown", "gateway trouble", "fuzz", "bad input", "load", "security"]

__all__ = ["load", "render"]


def load(directory: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(results: list[dict[str, Any]]) -> str:
    rows = []
    for res in results:
        for row in res["rows"]:
            verdict = "pass" if res["passed"] else "**FAIL**"
            rows.append((row, res, verdict))
    rows.sort(
        key=lambda r: (AREAS.index(r[0]["area"]) if r[0]["area"] in AREAS else 99, r[0]["fault"])
    )
    seeds = sorted({res["seed"] for res in results})
    total = sum(res["seconds"] for res in results)
    finished = max((res["finished_at"] for res in results), default="-")
    out = [
        f"Last run: {finished} on {results[0]['machine'] if results else '-'}, python "
        f"{results[0].get('python', '?') if results else '-'}; seed(s) "
        f"{', '.join(map(str, seeds))}; {len(results)} tests, {total:.0f} s of test time.",
        "",
        "| area | fault or bad input | tried | what happened | test |",
        "|---|---|---:|---|---|",
    ]
    for row, res, verdict in rows:
        test = res["test"].split("::", 1)[-1]
        out.append(
            f"| {row['area']} | {_cell(row['fault'])} | {row['tried']} | "
            f"{_cell(row['outcome'])} | {verdict}: `{_cell(test)}` |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="update this markdown file between markers")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    table = render(load(args.results))
    if args.write is None:
        sys.stdout.write(table)
        return 0
    text = args.write.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        print(f"{args.write}: markers {BEGIN} / {END} not found", file=sys.stderr)
        return 1
    args.write.write_text(text[: start + len(BEGIN)] + "\n" + table + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
