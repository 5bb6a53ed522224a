"""Flows files (`asya_gateway.flows`): JSON or TOML in, a registry out, or one line naming the
flow and the field; a bad file stops `asya-gateway run` before it serves."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from asya_gateway.flows import FlowsError, load_flows, parse_flows

from ..conftest import console_script

GOOD = {"flows": [{"name": "summarize", "route": ["a", "b"], "timeout": 30}]}


def test_json_and_toml_give_the_same_flows(tmp_path: Path) -> None:
    (tmp_path / "flows.json").write_text(json.dumps(GOOD))
    (tmp_path / "flows.toml").write_text(
        '[[flows]]\nname = "summarize"\nroute = ["a", "b"]\ntimeout = 30\n'
    )
    for name in ("flows.json", "flows.toml"):
        flows = load_flows(tmp_path / name)
        flow = flows.get("summarize")
        assert flow is not None and flow.route == ["a", "b"] and flow.timeout == 30


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"flows": [{"name": "s", "route": []}]}, "flow 's': `route` must name at least one actor"),
        ({"flows": [{"name": "s", "route": ["A!"]}]}, "flow 's': `route[0]`"),
        ({"flows": [{"name": "s", "route": ["a"], "timeout": -1}]}, "flow 's': `timeout`"),
        (
            {"flows": [{"name": "s", "route": ["a"], "colour": 1}]},
            "flow 's': Object contains unknown field `colour`",
        ),
        ({"flows": [{"name": "s", "route": "a"}]}, "flow 's': `route`"),
        ({"flows": [{"route": ["a"]}]}, "flow #1:"),
        ({"flows": [{"name": "Bad Name", "route": ["a"]}]}, "flow 'Bad Name': `name` must match"),
        (
            {"flows": [{"name": "s", "route": ["a"]}, {"name": "s", "route": ["b"]}]},
            "flow 's': `name` is used twice",
        ),
        ({"flow": []}, 'expected {"flows": [...]}'),
    ],
)
def test_a_bad_flow_is_refused_naming_the_flow_and_the_field(doc: Any, says: str) -> None:
    with pytest.raises(FlowsError) as caught:
        parse_flows(json.dumps(doc).encode())
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_flows_file_stops_the_gateway_with_one_line(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    bad = tmp_path / "flows.json"
    bad.write_text(json.dumps({"flows": [{"name": "summarize", "route": ["a"], "timeout": 0}]}))
    env = {**subprocess_env, "ASYA_GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}"}
    r = subprocess.run(
        [console_script("asya-gateway"), "run", "--port", "0", "--flows", str(bad)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr  # one line, no traceback
    assert str(bad) in r.stderr and "flow 'summarize': `timeout`" in r.stderr
