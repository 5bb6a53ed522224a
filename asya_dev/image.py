"""`asya image build TARGET -t NAME`: wrap a handler module in an image on the asya-runtime image.

TARGET is `FILE.py:FUNC`, `DIR:SPEC` (SPEC as `asya-runtime run` takes it, resolved inside DIR)
or `MODULE:FUNC` (a dotted module importable from the current directory; its top package is
copied). The image's entrypoint is `asya-runtime run` with `ASYA_HANDLER` set to the spec; a
`requirements.txt` beside the code is installed into the image. The plan (what to copy, which
spec, which engine command) is pure; only `build` touches the disk and runs the engine.
Runnable on its own: `python -m asya_dev.image build ...`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEFAULT_RUNTIME_IMAGE",
    "ENGINES",
    "HANDLER_CONTAINERFILE",
    "BuildPlan",
    "ImageError",
    "add_image_command",
    "build",
    "build_command",
    "find_engine",
    "main",
    "plan_build",
]

ENGINES: Final = ("podman", "docker", "buildah")
DEFAULT_RUNTIME_IMAGE: Final = "asya-runtime:0.1.0"
# Never copied into an image: environments, VCS data, caches.
_SKIP: Final = shutil.ignore_patterns(
    ".git", ".venv", "venv", "__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", ".ruff_cache"
)
_IDENT: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_FUNC: Final = re.compile(rf"^{_IDENT}(?:\.{_IDENT})?$")
_MODULE: Final = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*$")

# Kept identical to deploy/Containerfile.handler (a test checks): this text is what
# `asya image build` writes into the build context, so an installed wheel needs no checkout.
HANDLER_CONTAINERFILE: Final = """\
# A handler image: the asya-runtime image plus the user's code in /app (and its requirements).
#
#   asya image build path/to/handler.py:func -t NAME      # writes this file into a context
#   podman build -f deploy/Containerfile.handler --build-arg HANDLER=module:func -t NAME CONTEXT
#
# CONTEXT holds app/ (the code; an optional requirements.txt) and wheels/ (may be empty: then
# requirements come from the package index, else only from those wheels).
ARG RUNTIME_IMAGE=asya-runtime:0.1.0
FROM ${RUNTIME_IMAGE}
ARG HANDLER
USER root
COPY wheels/ /tmp/wheels/
COPY app/ /app/
RUN test -n "$HANDLER" || { echo "build-arg HANDLER=module:function is required" >&2; exit 1; } \\
 && if [ -f /app/requirements.txt ]; then \\
      if [ -n "$(ls -A /tmp/wheels)" ]; then set -- --no-index --find-links /tmp/wheels; fi; \\
      pip install --no-cache-dir "$@" -r /app/requirements.txt; \\
    fi \\
 && rm -rf /tmp/wheels
USER 10001:10001
WORKDIR /app
ENV ASYA_HANDLER=${HANDLER}
ENTRYPOINT ["asya-runtime", "run"]
"""


class ImageError(ValueError):
    """A build that cannot start; the message is one line naming the problem."""


@dataclass(frozen=True)
class BuildPlan:
    """What goes into the build context and which handler spec the image runs."""

    source: Path  # copied to app/ (a directory), or app/<name> when `copy_as` is set
    copy_as: str | None  # set when `source` is one package directory copied under app/
    spec: str  # the ASYA_HANDLER the image runs
    requirements: Path | None


def plan_build(target: str, cwd: Path) -> BuildPlan:
    """Resolve TARGET (see the module docstring) against `cwd`; raises ImageError."""
    where, sep, rest = target.partition(":")
    if not sep or not where or not rest:
        raise ImageError(f"{target!r}: expected FILE.py:FUNC, DIR:MODULE:FUNC or MODULE:FUNC")
    path = cwd / where
    if path.is_dir():
        if not re.match(rf"^{_IDENT}(?:\.{_IDENT})*[:.]{_IDENT}(?:\.{_IDENT})?$", rest):
            raise ImageError(f"{target!r}: {rest!r} is not a handler spec like module:func")
        req = path / "requirements.txt"
        return BuildPlan(path, None, rest, req if req.is_file() else None)
    if where.endswith(".py"):
        if not path.is_file():
            raise ImageError(f"{target!r}: no such file {str(path)!r}")
        if not _FUNC.match(rest):
            raise ImageError(f"{target!r}: {rest!r} is not a function name")
        if not _MODULE.match(path.stem):
            raise ImageError(f"{target!r}: {path.name!r} is not importable as a module name")
        req = path.parent / "requirements.txt"
        return BuildPlan(path.parent, None, f"{path.stem}:{rest}", req if req.is_file() else None)
    if not _MODULE.match(where) or not _FUNC.match(rest):
        raise ImageError(f"{target!r}: expected FILE.py:FUNC, DIR:MODULE:FUNC or MODULE:FUNC")
    parts = where.split(".")
    top = cwd / parts[0]
    module_file = cwd.joinpath(*parts).with_suffix(".py")
    package_init = cwd.joinpath(*parts, "__init__.py")
    if not (module_file.is_file() or package_init.is_file()):
        raise ImageError(f"{target!r}: module {where!r} not found under {str(cwd)!r}")
    req = cwd / "requirements.txt"
    if len(parts) == 1:
        # A top-level module file: copy just that file (not the whole current directory).
        return BuildPlan(module_file, module_file.name, target, req if req.is_file() else None)
    return BuildPlan(top, parts[0], target, req if req.is_file() else None)


def find_engine(
    preferred: str | None = None, which: Callable[[str], str | None] = shutil.which
) -> str:
    """The first of podman, docker, buildah on PATH (or `preferred`); raises ImageError."""
    names = (preferred,) if preferred else ENGINES
    for name in names:
        if name not in ENGINES:
            raise ImageError(f"--engine {name!r}: expected one of {', '.join(ENGINES)}")
        found = which(name)
        if found:
            return found
    if preferred:
        raise ImageError(f"container engine {preferred!r} not found on PATH")
    raise ImageError(
        "no container engine found: install podman, docker or buildah "
        "(e.g. `apt-get install podman`)"
    )


def build_command(
    engine: str, context: Path, tag: str, *, runtime_image: str, spec: str
) -> list[str]:
    """The engine's argv for a build of `context` (its Containerfile) tagged `tag`."""
    verb = ["bud"] if Path(engine).name == "buildah" else ["build"]
    return [
        engine,
        *verb,
        "-f",
        str(context / "Containerfile"),
        "--build-arg",
        f"RUNTIME_IMAGE={runtime_image}",
        "--build-arg",
        f"HANDLER={spec}",
        "-t",
        tag,
        str(context),
    ]


def _fill_context(plan: BuildPlan, context: Path, wheels: Path | None) -> None:
    app = context / "app"
    if plan.copy_as is None:
        shutil.copytree(plan.source, app, ignore=_SKIP)
    elif plan.source.is_dir():
        shutil.copytree(plan.source, app / plan.copy_as, ignore=_SKIP)
    else:
        app.mkdir()
        shutil.copy2(plan.source, app / plan.copy_as)
    if plan.requirements is not None and not (app / "requirements.txt").exists():
        shutil.copy2(plan.requirements, app / "requirements.txt")
    if wheels is not None:
        shutil.copytree(wheels, context / "wheels")
    else:
        (context / "wheels").mkdir()
    (context / "Containerfile").write_text(HANDLER_CONTAINERFILE)


def build(
    target: str,
    tag: str,
    *,
    cwd: Path | None = None,
    runtime_image: str = DEFAULT_RUNTIME_IMAGE,
    engine: str | None = None,
    wheels: Path | None = None,
    extra_args: Sequence[str] = (),
    quiet: bool = False,
) -> int:
    """Build the handler image; returns the engine's exit status. Raises ImageError."""
    plan = plan_build(target, cwd or Path.cwd())
    exe = find_engine(engine)
    if wheels is not None and not wheels.is_dir():
        raise ImageError(f"--wheels {str(wheels)!r}: not a directory")
    with tempfile.TemporaryDirectory(prefix="asya-image-") as tmp:
        context = Path(tmp)
        _fill_context(plan, context, wheels)
        argv = build_command(exe, context, tag, runtime_image=runtime_image, spec=plan.spec)
        argv[2:2] = list(extra_args)
        if quiet:
            argv.insert(2, "-q")
        return subprocess.run(argv, check=False).returncode


def _build_cmd(args: argparse.Namespace) -> int:
    """`asya image build`: the exit status."""
    try:
        code = build(
            args.target,
            args.tag,
            runtime_image=args.runtime_image,
            engine=args.engine,
            wheels=args.wheels,
        )
    except ImageError as exc:
        print(f"asya image: {exc}", file=sys.stderr)
        return 2
    if code != 0:
        print(f"asya image: the build of {args.tag} failed (exit {code})", file=sys.stderr)
        return code
    spec = plan_build(args.target, Path.cwd()).spec
    print(f"asya image: built {args.tag} (asya-runtime run {spec})")
    return 0


def _containerfile_cmd(args: argparse.Namespace) -> int:
    sys.stdout.write(HANDLER_CONTAINERFILE)
    return 0


def add_image_command(sub: Any) -> None:
    """Register `asya image build|containerfile` on the `asya` command's sub-parsers."""
    image = sub.add_parser(
        "image",
        help="build container images for handlers",
        description="Build container images for handlers.",
    )
    verbs = image.add_subparsers(dest="image_command", required=True, metavar="COMMAND")
    b = verbs.add_parser(
        "build",
        help="an image whose entrypoint is `asya-runtime run SPEC` (requirements.txt installed)",
        description="Build an image whose entrypoint is `asya-runtime run SPEC`, with the "
        "handler's requirements.txt installed if present.",
    )
    b.add_argument("target", metavar="TARGET", help="FILE.py:FUNC, DIR:MODULE:FUNC or MODULE:FUNC")
    b.add_argument("-t", "--tag", required=True, help="image name, e.g. my-actor:1.0")
    b.add_argument(
        "--from",
        dest="runtime_image",
        default=DEFAULT_RUNTIME_IMAGE,
        metavar="IMAGE",
        help=f"the asya-runtime image to build on [default {DEFAULT_RUNTIME_IMAGE}]",
    )
    b.add_argument(
        "--engine",
        choices=("podman", "docker", "buildah"),
        default=None,
        help="container engine [default: the first of podman, docker, buildah found]",
    )
    b.add_argument(
        "--wheels",
        type=Path,
        default=None,
        metavar="DIR",
        help="install requirements only from these wheels (no package index)",
    )
    b.set_defaults(func=_build_cmd)
    c = verbs.add_parser(
        "containerfile",
        help="print the handler Containerfile",
        description="Print the handler Containerfile (for a plain "
        "`podman/docker build --build-arg HANDLER=...`).",
    )
    c.set_defaults(func=_containerfile_cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m asya_dev.image ...` (the same as `asya image ...`)."""
    parser = argparse.ArgumentParser(prog="asya")
    add_image_command(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(["image", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover - `python -m asya_dev.image`
    raise SystemExit(main())
