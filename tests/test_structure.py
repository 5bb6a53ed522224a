"""The packages' shape, read with `ast` (nothing imported): no import cycle within a package, no
two public classes of one name, every declared dependency imported, the runtime self-contained.

Each rule is a small function run on the code and on a tiny synthetic case that breaks it, so
each check is seen to fail.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("asya_runtime", "asya_sidecar", "asya_gateway", "asya_mesh", "asya_dev")

# Distribution name -> import name, where they differ beyond `-` -> `_` and case.
IMPORT_NAME = {
    "a2a-sdk": "a2a",
    "prometheus-client": "prometheus_client",
    "pyjwt": "jwt",
    "kubernetes-validate": "kubernetes_validate",
    "pyyaml": "yaml",
}
# Declared but never imported, on purpose (each used some other way).
NOT_IMPORTED = {
    "asya-mesh": "the project itself (extras that include other extras)",
    "pytest-timeout": "a pytest plugin: the `timeout` setting in pyproject.toml",
    "ruff": "a command (make lint)",
    "mypy": "a command (make lint)",
    "types-jsonschema": "type stubs read by mypy",
    "httptools": "uvicorn's HTTP parser, named by the gateway's `http=\"httptools\"`",
    "websockets": "uvicorn's WebSocket protocol, named by the gateway's `ws=\"websockets-sansio\"`",
}
# The runtime's console-script shims import a command only after checking its extra is there.
RUNTIME_LAZY_ENTRY_POINTS = "asya_runtime.extras"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(*dirs: str) -> dict[str, ast.Module]:
    """`module name -> parsed source` for every .py file under `dirs`."""
    out = {}
    for d in dirs:
        for f in sorted((ROOT / d).rglob("*.py")):
            out[module_name(f)] = ast.parse(f.read_text(), str(f))
    return out


def imported(name: str, tree: ast.Module, known: Iterable[str], *, top_only: bool) -> set[str]:
    """What `name` imports (absolute names; `from a import b` gives `a.b` if that is a module,
    else `a`; a submodule's parent packages, imported first, are not counted).
    `top_only`: only statements run at import time (not inside functions or classes)."""
    known = set(known)
    is_pkg = any(n.startswith(name + ".") for n in known)
    if top_only:  # module-level statements, `if`/`try` blocks (TYPE_CHECKING too) included
        nodes: list[ast.AST] = [n for top in tree.body for n in _module_level(top)]
    else:
        nodes = list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            subs = {f"{mod}.{a.name}" for a in node.names} & known
            out.update(subs)
            if len(subs) < len(node.names):  # a name from `mod` itself, not only its submodules
                out.add(mod)
    return out


def _module_level(node: ast.stmt) -> Iterator[ast.stmt]:
    yield node
    if isinstance(node, ast.If | ast.Try):
        for child in [*node.body, *node.orelse, *getattr(node, "handlers", [])]:
            if isinstance(child, ast.ExceptHandler):
                for c in child.body:
                    yield from _module_level(c)
            else:
                yield from _module_level(child)


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of `graph` (a -> b -> ... -> a), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(n: str) -> list[str] | None:
        path.append(n)
        on_path.add(n)
        for m in sorted(graph.get(n, ())):
            if m in on_path:
                return [*path[path.index(m) :], m]
            if m not in done and (found := visit(m)):
                return found
        path.pop()
        on_path.discard(n)
        done.add(n)
        return None

    for n in sorted(graph):
        if n not in done and (found := visit(n)):
            return found
    return None


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports when imported."""
    trees = modules(package)
    return {
        name: {m for m in imported(name, tree, trees, top_only=True) if m in trees and m != name}
        for name, tree in trees.items()
    }


def duplicate_classes(trees: Mapping[str, ast.Module]) -> dict[str, list[str]]:
    """Public class names defined at the top of more than one module."""
    where: dict[str, list[str]] = defaultdict(list)
    for name, tree in trees.items():
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(name)
    return {k: v for k, v in where.items() if len(v) > 1}


def declared_dependencies(pyproject: Mapping[str, object]) -> set[str]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs.extend(extra)
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in reqs}


def unimported(declared: Iterable[str], imports: set[str]) -> set[str]:
    """Declared distributions neither imported (by their import name) nor exempt."""
    return {
        d
        for d in declared
        if d not in NOT_IMPORTED and IMPORT_NAME.get(d, d.replace("-", "_")) not in imports
    }


def foreign_imports(trees: Mapping[str, ast.Module], own: str) -> dict[str, set[str]]:
    """Per module of `own`, what it imports from the other asya packages."""
    others = set(PACKAGES) - {own}
    out = {}
    for name, tree in trees.items():
        found = {
            m for m in imported(name, tree, trees, top_only=False) if m.split(".")[0] in others
        }
        if found:
            out[name] = found
    return out


# -- the rules, on the code ---------------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_within_a_package(package: str) -> None:
    graph = import_graph(package)
    assert len(graph) > 1 and any(graph.values())  # the graph was read at all
    assert find_cycle(graph) is None


def test_no_two_public_classes_share_a_name() -> None:
    trees = modules(*PACKAGES)
    assert len(trees) > 50
    assert duplicate_classes(trees) == {}


def test_every_declared_dependency_is_imported() -> None:
    declared = declared_dependencies(tomllib.loads((ROOT / "pyproject.toml").read_text()))
    assert {"anyio", "msgspec", "a2a-sdk", "pyyaml"} <= declared  # base and extras both read
    trees = modules(*PACKAGES, "tests", "bench")
    imports = {
        m.split(".")[0]
        for name, tree in trees.items()
        for m in imported(name, tree, trees, top_only=False)
    }
    assert unimported(declared, imports) == set()
    assert set(NOT_IMPORTED) <= declared | {"asya-mesh"}, "an exemption for nothing"


def test_the_runtime_imports_no_other_asya_package() -> None:
    trees = modules("asya_runtime")
    found = foreign_imports(trees, "asya_runtime")
    lazy = found.pop(RUNTIME_LAZY_ENTRY_POINTS, set())
    assert found == {}
    # The shims' imports run only when their command does, never when the module is imported.
    tree = trees[RUNTIME_LAZY_ENTRY_POINTS]
    assert lazy and not foreign_imports(
        {RUNTIME_LAZY_ENTRY_POINTS: _top_level(tree)}, "asya_runtime"
    )


def _top_level(tree: ast.Module) -> ast.Module:
    return ast.Module(
        body=[n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)],
        type_ignores=[],
    )


# -- each rule fails where it should ------------------------------------------------------------


def _parse(**sources: str) -> dict[str, ast.Module]:
    return {name.replace("__", "."): ast.parse(src) for name, src in sources.items()}


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_reader_resolves_relative_and_submodule_imports() -> None:
    trees = _parse(
        p="from .a import x\nfrom . import b\n",
        p__a="import p.b\ndef f():\n    from .c import y\n",
        p__b="from p.a import thing\n",
        p__c="",
    )
    assert imported("p", trees["p"], trees, top_only=True) == {"p.a", "p.b"}
    assert imported("p.a", trees["p.a"], trees, top_only=True) == {"p.b"}
    assert imported("p.a", trees["p.a"], trees, top_only=False) == {"p.b", "p.c"}
    graph = {
        n: {m for m in imported(n, t, trees, top_only=True) if m in trees and m != n}
        for n, t in trees.items()
    }
    assert find_cycle(graph) == ["p.a", "p.b", "p.a"]


def test_duplicate_classes_are_found() -> None:
    trees = _parse(
        x__a="class Frame: ...\nclass _Private: ...", y__b="class Frame: ...\n_Private = 1"
    )
    assert duplicate_classes(trees) == {"Frame": ["x.a", "y.b"]}


def test_an_unimported_dependency_is_found() -> None:
    pyproject = {
        "project": {
            "dependencies": ["anyio>=4"],
            "optional-dependencies": {"x": ["PyYAML>=6", "pyjwt[crypto]>=2", "unused-lib"]},
        }
    }
    declared = declared_dependencies(pyproject)
    assert declared == {"anyio", "pyyaml", "pyjwt", "unused-lib"}
    assert unimported(declared, {"anyio", "yaml", "jwt"}) == {"unused-lib"}


def test_a_runtime_import_of_another_package_is_found() -> None:
    trees = _parse(asya_runtime__x="def f():\n    from asya_mesh.events import Event\n")
    assert foreign_imports(trees, "asya_runtime") == {"asya_runtime.x": {"asya_mesh.events"}}
