"""`asya_runtime.settings`: one declaration per option gives env reading, flags, help, docs."""

from __future__ import annotations

import argparse
from typing import Annotated

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asya_runtime.settings import ConfigError, load, load_one, one_of, opt, options
from asya_runtime.settings_cli import (
    Parser,
    add_arguments,
    given_from_args,
    help_line,
    markdown_table,
)


class Inner(msgspec.Struct, kw_only=True, frozen=True):
    url: Annotated[str, opt("T_URL", "where it is", metavar="URL")] = "x://"


class Conf(msgspec.Struct, kw_only=True, frozen=True):
    name: Annotated[str, opt("T_NAME", "the name", metavar="NAME")]
    inner: Inner = Inner()
    count: Annotated[int, opt("T_COUNT", "how many", ge=1)] = 1
    wait: Annotated[float, opt("T_WAIT", "how long", duration=True, ge=0)] = 1.5
    on: Annotated[bool, opt("T_ON", "whether", flag="--on")] = False
    addr: Annotated[str, opt("T_ADDR", "empty disables", empty_ok=True)] = "a:1"
    mode: Annotated[str, opt("T_MODE", "a or b", check=one_of("a", "b"))] = "a"
    items: Annotated[list[str], opt("T_ITEMS", "some items")] = msgspec.field(default_factory=list)
    internal: float = 2.0  # not an option: no declaration


def parse(*argv: str) -> dict[str, object]:
    p = Parser(prog="t")
    add_arguments(p, Conf)
    return given_from_args(p.parse_args(list(argv)), Conf)


def test_options_are_flattened_in_field_order_and_skip_undeclared_fields() -> None:
    got = [(o.dest, o.env, o.flag) for o in options(Conf)]
    assert got[:3] == [
        ("name", "T_NAME", "--name"),
        ("inner_url", "T_URL", "--url"),
        ("count", "T_COUNT", "--count"),
    ]
    assert "internal" not in [o.dest for o in options(Conf)]


def test_flag_beats_variable_beats_default() -> None:
    env = {"T_NAME": "env", "T_COUNT": "3", "T_WAIT": "250ms", "T_URL": "y://"}
    c = load(Conf, env, parse("--count", "7", "--on", "--items", "a,b", "--items", "c"))
    assert (c.name, c.count, c.wait, c.on, c.inner.url) == ("env", 7, 0.25, True, "y://")
    assert c.items == ["a", "b", "c"] and c.internal == 2.0
    assert load(Conf, {"T_NAME": "n", "T_ITEMS": "x, y"}).items == ["x", "y"]


def test_empty_variables_are_unset_unless_empty_is_a_value() -> None:
    c = load(Conf, {"T_NAME": "n", "T_COUNT": "", "T_ADDR": ""})
    assert c.count == 1 and c.addr == ""


@pytest.mark.parametrize(
    ("env", "argv", "message"),
    [
        ({}, (), "T_NAME / --name is required (the name)"),
        ({"T_COUNT": "0"}, (), "T_COUNT: invalid value '0' (expected an integer >= 1)"),
        ({"T_COUNT": "x"}, (), "T_COUNT: invalid value 'x' (expected an integer)"),
        ({"T_WAIT": "soon"}, (), "T_WAIT: invalid duration 'soon'"),
        ({"T_ON": "maybe"}, (), "T_ON: invalid value 'maybe' (expected true/false)"),
        ({"T_MODE": "c"}, (), "T_MODE: expected one of a, b, got 'c'"),
        (
            {},
            ("--count", "-2"),
            "--count: invalid value '-2' (expected an integer >= 1); variable T_COUNT",
        ),
    ],
)
def test_bad_values_are_one_line_naming_the_variable_or_flag(
    env: dict[str, str], argv: tuple[str, ...], message: str
) -> None:
    full = env if "T_NAME" in message else {"T_NAME": "n", **env}
    with pytest.raises(ConfigError) as err:
        load(Conf, full, parse(*argv), required=["name"])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@given(st.text(max_size=20))
def test_any_string_converts_or_names_its_variable(text: str) -> None:
    for var in ("T_COUNT", "T_WAIT", "T_ON", "T_MODE"):
        try:
            load(Conf, {"T_NAME": "n", var: text})
        except ConfigError as exc:
            assert str(exc).startswith(f"{var}: ") and "\n" not in str(exc).strip()


def test_help_and_docs_come_from_the_same_declaration() -> None:
    by = {o.dest: o for o in options(Conf)}
    assert help_line(by["wait"]) == "how long [T_WAIT, default 1.5s]"
    assert help_line(by["name"]) == "the name [T_NAME, required]"
    assert help_line(by["on"]) == "whether [T_ON, default false]"
    assert "| `T_ADDR` | `--addr` | `a:1` | empty disables |" in markdown_table(Conf)
    p = Parser(prog="t")
    add_arguments(p, Conf)
    text = p.format_help()
    assert "--no-on" not in text and "<bool>" not in text


def test_usage_errors_are_one_line() -> None:
    p = Parser(prog="t")
    add_arguments(p, Conf)
    with pytest.raises(SystemExit) as ex:
        p.parse_args(["--bogus"])
    assert ex.value.code == 2
    assert isinstance(p, argparse.ArgumentParser)


def test_load_one_reads_one_option_and_leaves_the_others_unchecked() -> None:
    env = {"T_MODE": "b", "T_COUNT": "zero"}  # T_COUNT is bad, but not asked for
    assert load_one(Conf, "mode", env) == "b"
    assert load_one(Conf, "mode", env, {"mode": "a"}) == "a"  # the flag wins
    assert load_one(Conf, "count", {}) == 1  # unset: the default
    with pytest.raises(ConfigError, match=r"^T_MODE: expected one of a, b, got 'c'$"):
        load_one(Conf, "mode", {"T_MODE": "c"})
    with pytest.raises(ConfigError, match=r"^T_NAME / --name is required \(the name\)$"):
        load_one(Conf, "name", {})


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["queue", "ls"], "asya_sidecar.cli"),
        (["run"], "asya_sidecar.cli"),
        (["run"], "asya_gateway.cli"),
    ],
)
def test_a_bad_log_level_is_refused_in_one_line_naming_the_variable_and_the_levels(
    argv: list[str],
    module: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import importlib

    monkeypatch.setenv("ASYA_LOG_LEVEL", "loud")
    monkeypatch.setenv("ASYA_ACTOR_NAME", "a")
    assert importlib.import_module(module).main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ASYA_LOG_LEVEL" in err and "'loud'" in err, err
    assert "expected one of" in err and "debug" in err.lower() and "error" in err.lower(), err
