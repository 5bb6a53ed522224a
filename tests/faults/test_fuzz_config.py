"""Fuzz handler specs and configuration values (in-process, where they are parsed), plus a
table of bad values given to the real commands.

Invariants: a handler spec loads a callable from an importable module or raises
`HandlerLoadError` (never another exception, never an attribute chain past `Class.method`, never
a file path); a configuration either builds or raises `ValueError` naming the variable; the
commands exit non-zero with a one-line message naming the problem.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

from asya_mesh.transports import TransportConfig
from asya_runtime.durations import parse_duration
from asya_runtime.errors import HandlerLoadError
from asya_runtime.loader import load_handler
from asya_sidecar.config import SidecarConfig

from ..conftest import console_script
from .knobs import FUZZ_BATCH, FUZZ_RUNS, SEED
from .results import Recorder

pytestmark = [pytest.mark.slow]

_SAFE_MODULES = ["tests.faults.handlers", "json", "os.path", "collections", "tests.faults"]
_TOKENS = [
    "echo",
    "hang_async",
    "Class",
    "method",
    "__class__",
    "__subclasses__",
    "__init__",
    "__globals__",
    "__builtins__",
    "system",
    "loads",
    "OrderedDict",
    "fromkeys",
    "x",
]
_SEPS = [":", ".", "/", "\\", "..", "../", "::", " ", "\x00", "", "-", "$"]

spec_strategy = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.sampled_from(_SAFE_MODULES) | st.sampled_from(_TOKENS) | st.sampled_from(_SEPS),
        min_size=1,
        max_size=6,
    ).map("".join),
    st.builds(
        lambda m, sep, attrs: f"{m}{sep}{'.'.join(attrs)}",
        st.sampled_from(_SAFE_MODULES),
        st.sampled_from([":", "."]),
        st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=4),
    ),
    st.sampled_from(
        [
            "/etc/passwd:x",
            "../../etc:passwd",
            "file:///tmp/x:y",
            "/tmp/h.py:f",
            "os:system",
            "builtins:eval",
            "tests.faults.handlers:echo.__globals__",
        ]
    ),
)


def _harmless(spec: str) -> bool:
    """Don't let random text import a module we have not vetted (`antigravity` opens a browser)."""
    head = spec.strip().split(":")[0].split(".")[0]
    return head in sys.modules or (
        head not in sys.stdlib_module_names and not head.startswith(("_", "test"))
    )


def test_random_handler_specs_load_or_fail_clearly(recorder: Recorder) -> None:
    outcomes = {"loaded": 0, "HandlerLoadError": 0}
    tried = [0]
    t0 = time.monotonic()

    @settings(
        max_examples=FUZZ_RUNS * 6 // 5 + 1,  # ~5-8% of specs are skipped as unvetted
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(specs=st.lists(spec_strategy, min_size=FUZZ_BATCH, max_size=FUZZ_BATCH))
    def many(specs: list[str]) -> None:
        for spec in specs:
            if not _harmless(spec):
                continue
            tried[0] += 1
            try:
                h = load_handler(spec)
            except HandlerLoadError as exc:
                outcomes["HandlerLoadError"] += 1
                assert str(exc) and "\n" not in str(exc), repr(exc)
                continue
            outcomes["loaded"] += 1
            # Loaded: a callable reached by at most module + Class.method, no dunder walking.
            target = spec.replace(":", ".").strip().split(".")
            assert not any(p.startswith("__") for p in target[-2:]) or callable(h.func)
            assert not any(c in spec for c in "/\\\x00"), f"loaded a path-like spec {spec!r}"
            assert "__globals__" not in spec and "__subclasses__" not in spec, spec

    hseed(SEED)(many)()
    recorder.row(
        "fuzz",
        "handler specs: random text, module/attribute/separator soup, path-like and dunder specs",
        tried[0],
        f"each loaded a callable from an importable module or raised a one-line "
        f"HandlerLoadError ({outcomes})",
        seconds=round(time.monotonic() - t0, 1),
    )


_VARS = [
    "ASYA_ACTOR_NAME",
    "ASYA_NAMESPACE",
    "ASYA_TRANSPORT",
    "ASYA_CONCURRENCY",
    "ASYA_RESILIENCY_ACTOR_TIMEOUT",
    "ASYA_RUNTIME_READY_TIMEOUT",
    "ASYA_RESILIENCY_POLICIES",
    "ASYA_RESILIENCY_RULES",
    "ASYA_GATEWAY_URL",
    "ASYA_IS_END_ACTOR",
    "ASYA_METRICS_ADDR",
    "ASYA_LOG_LEVEL",
    "ASYA_LOG_FORMAT",
    "ASYA_SHUTDOWN_GRACE",
    "ASYA_CANCEL_GRACE",
    "ASYA_FLY_BUFFER",
    "ASYA_RABBITMQ_PREFETCH",
    "ASYA_SQS_VISIBILITY_TIMEOUT",
    "ASYA_SQS_WAIT_TIME_SECONDS",
    "ASYA_SQLITE_PATH",
    "ASYA_SOCKET_DIR",
]
_NASTY = [
    "",
    " ",
    "0",
    "-1",
    "1e309",
    "nan",
    "inf",
    "1h30m",
    "5m",
    "300ms",
    "-5s",
    "1.5.5s",
    "true",
    "maybe",
    "{}",
    "[]",
    '{"a": 1}',
    "[1,2]",
    "\x00",
    "9" * 40,
    "http://",
    "file:///etc/passwd",
    "sqlite",
    "rabbitmq",
    "kafka",
    ":8080",
    "host:99999",
    "DEBUG",
]


def test_random_env_values_build_or_name_the_variable(recorder: Recorder) -> None:
    outcomes = {"built": 0, "ValueError": 0}
    tried = [0]
    t0 = time.monotonic()
    value = st.sampled_from(_NASTY) | st.text(max_size=30)
    env_strategy = st.dictionaries(st.sampled_from(_VARS), value, max_size=5)

    @settings(
        max_examples=FUZZ_RUNS,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(envs=st.lists(env_strategy, min_size=FUZZ_BATCH, max_size=FUZZ_BATCH))
    def many(envs: list[dict[str, str]]) -> None:
        for env in envs:
            tried[0] += 1
            env = {"ASYA_ACTOR_NAME": "a", **env}
            try:
                SidecarConfig.from_env(env)
                outcomes["built"] += 1
            except ValueError as exc:
                outcomes["ValueError"] += 1
                msg = str(exc)
                assert any(v in msg for v in env) or "transport" in msg, (env, msg)
            try:
                TransportConfig.from_env(env)
            except ValueError as exc:
                assert "ASYA_" in str(exc) or "transport" in str(exc), (env, str(exc))
            for v in env.values():
                with contextlib.suppress(ValueError):
                    parse_duration(v)  # a float or ValueError, nothing else

    hseed(SEED)(many)()
    recorder.row(
        "fuzz",
        "env values: up to 5 random ASYA_* variables with nasty/random values per case",
        tried[0],
        f"each built a config or raised ValueError naming the variable ({outcomes})",
        seconds=round(time.monotonic() - t0, 1),
    )


BAD_COMMANDS = [
    (["asya-runtime", "run", "no_such_module_xyz:f"], {}, "no_such_module_xyz"),
    (["asya-runtime", "run", "/etc/passwd:x"], {}, "bad handler spec"),
    (
        ["asya-runtime", "run", "tests.faults.handlers:echo"],
        {"ASYA_SOCKET_CHMOD": "rw"},
        "ASYA_SOCKET_CHMOD",
    ),
    (
        ["asya-runtime", "run", "tests.faults.handlers:echo"],
        {"ASYA_RUNTIME_CONCURRENCY": "lots"},
        "ASYA_RUNTIME_CONCURRENCY",
    ),
    (
        ["asya-sidecar", "run"],
        {"ASYA_ACTOR_NAME": "a", "ASYA_CONCURRENCY": "0"},
        "ASYA_CONCURRENCY",
    ),
    (
        ["asya-sidecar", "run"],
        {"ASYA_ACTOR_NAME": "a", "ASYA_TRANSPORT": "kafka"},
        "ASYA_TRANSPORT",
    ),
    (
        ["asya-sidecar", "run"],
        {"ASYA_ACTOR_NAME": "a", "ASYA_RESILIENCY_ACTOR_TIMEOUT": "soon"},
        "ASYA_RESILIENCY_ACTOR_TIMEOUT",
    ),
    (
        ["asya-sidecar", "run"],
        {"ASYA_ACTOR_NAME": "a", "ASYA_GATEWAY_URL": "file:///etc"},
        "ASYA_GATEWAY_URL",
    ),
    (["asya-sidecar", "run"], {}, "ASYA_ACTOR_NAME"),
    (["asya-gateway", "run", "--port", "1"], {"ASYA_TRANSPORT": "kafka"}, "ASYA_TRANSPORT"),
]


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    BAD_COMMANDS,
    ids=[f"{a[0]}-{i}" for i, (a, _, _) in enumerate(BAD_COMMANDS)],
)
def test_bad_configuration_exits_with_a_clear_message(
    argv: list[str],
    env: dict[str, str],
    named: str,
    subprocess_env: dict[str, str],
    short_tmp: object,
    recorder: Recorder,
) -> None:
    run_env = {k: v for k, v in subprocess_env.items() if not k.startswith("ASYA_")}
    run_env.update(
        {
            "ASYA_SOCKET_DIR": str(short_tmp),
            "ASYA_SQLITE_PATH": f"{short_tmp}/q.db",
            "ASYA_METRICS_ADDR": "",
            **env,
        }
    )
    p = subprocess.run(
        [console_script(argv[0]), *argv[1:]],
        env=run_env,
        capture_output=True,
        timeout=60,
        text=True,
    )
    err = p.stderr.strip()
    recorder.row(
        "bad input",
        f"{argv[0]} with {env or argv[-1]!r}",
        1,
        f"exit {p.returncode}: {err.splitlines()[-1][:120] if err else '(no message)'}",
    )
    assert p.returncode != 0, p.stdout + p.stderr
    assert err, "no message"
    assert "Traceback" not in err, err
    assert named.lower() in err.lower(), err
