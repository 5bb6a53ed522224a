"""Handler specs → callables, and clear one-line failures."""

from __future__ import annotations

import re

import pytest

from asya_runtime.errors import HandlerLoadError
from asya_runtime.loader import HandlerKind, load_handler


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("examples.handlers.tokens:stream", HandlerKind.ASYNC_GENERATOR),
        ("examples.handlers.tokens.stream", HandlerKind.ASYNC_GENERATOR),
        ("examples.handlers.util:echo", HandlerKind.ASYNC_FUNCTION),
        ("examples.handlers.sync_upper.upper", HandlerKind.FUNCTION),
        ("examples.handlers.counter:Counter.handle", HandlerKind.ASYNC_FUNCTION),
        ("examples.handlers.counter.Counter.handle", HandlerKind.ASYNC_FUNCTION),
        ("tests.runtime.handlers:sync_gen", HandlerKind.GENERATOR),
    ],
)
def test_specs_load(spec: str, kind: HandlerKind) -> None:
    h = load_handler(spec)
    assert h.kind is kind and h.spec == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no handler given"),
        ("nodots", "bad handler spec"),
        ("a b:c", "bad handler spec"),
        ("mod:", "bad handler spec"),
        ("mod:a.b.c", "bad handler spec"),
        ("no_such_module_xyz:f", "module 'no_such_module_xyz' not found"),
        ("no_such_module_xyz.f", "no importable module"),
        ("examples.handlers.util:nope", "has no attribute 'nope'"),
        (
            "examples.handlers.tokens",
            "'examples.handlers.tokens' names the module 'examples.handlers.tokens', but a "
            "handler name is missing: use module:function or module:Class.method "
            "(e.g. examples.handlers.tokens:stream)",
        ),
        ("examples.handlers:tokens", "a handler name is missing"),
        ("examples.handlers.util.nope", "has no attribute 'nope'"),
        ("examples.handlers.util.A.B.c", "expected function or Class.method"),
        ("tests.runtime.handlers:NOT_CALLABLE", "not callable"),
        ("tests.runtime.handlers:NeedsArgs.handle", "with no arguments failed: TypeError"),
        ("tests.runtime.handlers:RaisesInInit.handle", "RuntimeError: no model"),
        ("tests.runtime.handlers:Stateful", "is a class"),
        ("tests.runtime.handlers:Stateful.missing", "has no attribute 'missing'"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(HandlerLoadError, match=re.escape(message)) as info:
        load_handler(spec)
    assert "\n" not in str(info.value)


def test_syntax_error_in_module(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "asya_bad_syntax_mod.py").write_text("def f(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        HandlerLoadError, match="importing module 'asya_bad_syntax_mod' failed: SyntaxError"
    ):
        load_handler("asya_bad_syntax_mod:f")


def test_missing_dependency_inside_module_is_not_reported_as_missing_module(
    tmp_path,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    (tmp_path / "asya_dep_mod.py").write_text("import no_such_dep_xyz\ndef f(p): return p\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        HandlerLoadError, match="importing module 'asya_dep_mod' failed: ModuleNotFoundError"
    ):
        load_handler("asya_dep_mod.f")
