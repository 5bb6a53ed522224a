"""`asya image build TARGET -t NAME`: wrap a handler module in an image on the asya-runtime image.

TARGET is `FILE.py:FUNC`, `DIR:SPEC` (SPEC as `asya-runtime run` takes it, resolved inside DIR)
or `MODULE:FUNC` (a dotted module importable from the current directory; its top package is
copied). The image's entrypoint is `asya-runtime run` with `ASYA_HANDLER` set to the spec; a
`requirements.txt` beside the code is installed into the image. The plan (what to copy, which
spec, which engine command) is pure; only `build` touches the disk and runs the engine.
Runnable on its own: `python -m asya_dev.image build ...`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import typer

__all__ = [
    "DEFAULT_RUNTIME_IMAGE",
    "ENGINES",
    "HANDLER_CONTAINERFILE",
    "BuildPlan",
    "ImageError",
    "build",
    "build_command",
    "find_engine",
    "image_app",
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


image_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Container images.")


@image_app.command("build")
def build_cmd(
    target: Annotated[str, typer.Argument(help="FILE.py:FUNC, DIR:MODULE:FUNC or MODULE:FUNC")],
    tag: Annotated[str, typer.Option("-t", "--tag", help="Image name, e.g. my-actor:1.0")],
    runtime_image: Annotated[
        str, typer.Option("--from", help="The asya-runtime image to build on.")
    ] = DEFAULT_RUNTIME_IMAGE,
    engine: Annotated[
        str | None, typer.Option(help="podman | docker | buildah (default: the first found).")
    ] = None,
    wheels: Annotated[
        Path | None,
        typer.Option(help="Install requirements only from these wheels (no package index)."),
    ] = None,
) -> None:
    """Build an image whose entrypoint is `asya-runtime run SPEC` (requirements.txt installed)."""
    try:
        code = build(target, tag, runtime_image=runtime_image, engine=engine, wheels=wheels)
    except ImageError as exc:
        typer.echo(f"asya image: {exc}", err=True)
        raise typer.Exit(2) from None
    if code != 0:
        typer.echo(f"asya image: the build of {tag} failed (exit {code})", err=True)
        raise typer.Exit(code)
    typer.echo(f"asya image: built {tag} (asya-runtime run {plan_build(target, Path.cwd()).spec})")


@image_app.command("containerfile")
def containerfile_cmd() -> None:
    """Print the handler Containerfile (for a plain `podman/docker build --build-arg HANDLER=`)."""
    sys.stdout.write(HANDLER_CONTAINERFILE)


@image_app.callback()
def _root() -> None:
    """Container images."""


if __name__ == "__main__":  # pragma: no cover - `python -m asya_dev.image`
    os.environ.setdefault("COLUMNS", "100")
    image_app(prog_name="asya image")
