"""The four commands as a user runs them: help, version, one-line failures, missing extras."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from asya_gateway.config import GatewayConfig
from asya_runtime.cli import RuntimeConfig
from asya_runtime.settings import options
from asya_sidecar.config import SidecarConfig
from tests.conftest import console_script

pytestmark = pytest.mark.e2e

COMMANDS = {
    "asya-runtime": ["run"],
    "asya-sidecar": ["run"],
    "asya-gateway": ["run"],
    "asya": ["dev"],
}


def run(
    argv: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(argv[0]), *argv[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/tmp",
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_h_help_and_version(
    command: str, subprocess_env: dict[str, str]
) -> None:
    short = run([command, "-h"], subprocess_env)
    long = run([command, "--help"], subprocess_env)
    assert short.returncode == long.returncode == 0 and short.stdout == long.stdout
    assert short.stdout.startswith(f"usage: {command}")
    version = run([command, "--version"], subprocess_env)
    assert version.returncode == 0 and re.fullmatch(rf"{command} \d+\.\d+\.\d+\n", version.stdout)
    sub = run([command, *COMMANDS[command], "--help"], subprocess_env)
    assert sub.returncode == 0, sub.stderr
    assert "<bool>" not in sub.stdout and "<str>" not in sub.stdout and "BOOLEAN" not in sub.stdout
    # Every option says its variable and default in the same words.
    helps = re.findall(
        r"\[(ASYA_[A-Z_]+, )?(default [^\]]+|required)\]", " ".join(sub.stdout.split())
    )
    assert len(helps) >= 8, sub.stdout


@pytest.mark.parametrize(
    ("command", "cls"),
    [
        ("asya-sidecar", SidecarConfig),
        ("asya-gateway", GatewayConfig),
        ("asya-runtime", RuntimeConfig),
    ],
)
def test_run_help_lists_every_variable_with_its_help(
    command: str, cls: type, subprocess_env: dict[str, str]
) -> None:
    wide = {**subprocess_env, "COLUMNS": "1000"}  # argparse wraps at hyphens otherwise
    text = " ".join(run([command, "run", "--help"], wide).stdout.split())
    for o in options(cls):
        if o.flag is None:
            continue
        assert o.flag in text
        assert " ".join(o.help.split()) in text.replace("%%", "%"), o.help
        if o.env:
            assert f"[{o.env}, " in text, o.env


def test_sidecar_refuses_a_bad_actor_name_naming_the_variable_and_the_rule(
    subprocess_env: dict[str, str],
) -> None:
    r = run(["asya-sidecar", "run"], {**subprocess_env, "ASYA_ACTOR_NAME": "Bad Name"})
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1, r.stderr
    assert "ASYA_ACTOR_NAME" in r.stderr and "'Bad Name'" in r.stderr
    assert "1-63 letters, digits" in r.stderr  # the rule, from asya_mesh.names


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _broker_env() -> dict[str, str]:
    out = subprocess.run(
        ["bash", "/work/shared/tools/services.sh", "env", "rabbitmq", "sqs"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return dict(re.findall(r"(?:export )?([A-Z_]+)=['\"]?([^'\"\n]+)", out))


def _failures() -> list[tuple[str, dict[str, str], str]]:
    port = closed_port()
    cases = [
        (
            "broker down",
            {
                "ASYA_TRANSPORT": "rabbitmq",
                "ASYA_RABBITMQ_URL": f"amqp://u:secret@127.0.0.1:{port}/",
            },
            f"RabbitMQ at amqp://u:***@127.0.0.1:{port}/",
        ),
        (
            "bad broker URL",
            {"ASYA_TRANSPORT": "rabbitmq", "ASYA_RABBITMQ_URL": "localhost:5672"},
            "ASYA_RABBITMQ_URL",
        ),
        (
            "SQS endpoint down",
            {
                "ASYA_TRANSPORT": "sqs",
                "ASYA_SQS_ENDPOINT": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "x",
            },
            f"SQS at http://127.0.0.1:{port}",
        ),
    ]
    rabbit = _broker_env().get("RABBITMQ_URL")
    if rabbit:
        wrong = re.sub(r"//([^:@/]+):([^@/]+)@", r"//\1:wrong-password@", rabbit)
        host = re.sub(r"//[^@/]+@", "//", wrong).split("//", 1)[1].rstrip("/")
        cases.append(
            (
                "bad credentials",
                {"ASYA_TRANSPORT": "rabbitmq", "ASYA_RABBITMQ_URL": wrong},
                f"@{host}",
            )
        )
    return cases


@pytest.mark.parametrize("command", ["asya-sidecar", "asya-gateway"])
@pytest.mark.parametrize(
    ("what", "env", "named"), _failures(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_expected_failures_are_one_line_naming_the_address(
    command: str, what: str, env: dict[str, str], named: str, subprocess_env: dict[str, str]
) -> None:
    base = {**subprocess_env, "ASYA_ACTOR_NAME": "a", "ASYA_METRICS_ADDR": ""}
    argv = [command, "run"] + (["--port", str(closed_port())] if command == "asya-gateway" else [])
    r = run(argv, {**base, **env}, timeout=60)
    assert r.returncode in (1, 2), (what, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"{command}: "), r.stderr
    assert named in r.stderr, r.stderr
    assert "secret" not in r.stderr and "wrong-password" not in r.stderr  # passwords hidden
    debug = run(argv, {**base, **env, "ASYA_LOG_LEVEL": "DEBUG"}, timeout=60)
    if r.returncode == 1:  # an unreachable thing (not a typo): the traceback at DEBUG
        assert "Traceback" in debug.stderr and debug.stderr.rstrip().endswith(r.stderr.strip())


BLOCKER = """
import os, sys
_BLOCK = set(os.environ["BLOCK_MODULES"].split(","))
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


@pytest.mark.parametrize(
    ("command", "blocked", "extra"),
    [
        ("asya-sidecar", "structlog", "sidecar"),
        ("asya-sidecar", "httpx", "sidecar"),
        ("asya-gateway", "uvicorn", "gateway"),
        ("asya-gateway", "websockets", "gateway"),
        ("asya", "starlette", "gateway"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    command: str, blocked: str, extra: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {
        **subprocess_env,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), subprocess_env.get("PYTHONPATH", "")]),
        "BLOCK_MODULES": blocked,
    }
    r = run([command, "--help"], env)
    assert r.returncode == 2
    assert r.stderr == (
        f"{command} needs the {extra} extra: pip install 'asya-mesh[{extra}]' "
        f"(missing: {blocked})\n"
    )
    # The runtime needs no extra at all.
    rt = subprocess.run(
        [sys.executable, "-m", "asya_runtime", "--version"], env=env, capture_output=True, text=True
    )
    assert rt.returncode == 0, rt.stderr
