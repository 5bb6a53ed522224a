"""`asya image build`: what goes into the image, which engine runs, and the one-line refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asya_dev.image import ImageError, build_command, find_engine, plan_build
from tests.conftest import console_script

from .kube import ROOT


def test_a_file_target_copies_its_directory_and_runs_module_colon_func(tmp_path: Path) -> None:
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "agent.py").write_text("async def run(p):\n    yield p\n")
    (tmp_path / "h" / "requirements.txt").write_text("httpx\n")
    plan = plan_build("h/agent.py:run", tmp_path)
    assert plan.source == tmp_path / "h" and plan.copy_as is None
    assert plan.spec == "agent:run"
    assert plan.requirements == tmp_path / "h" / "requirements.txt"


def test_a_dir_target_keeps_the_runtime_spec(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    plan = plan_build("svc:pkg.mod:Agent.handle", tmp_path)
    assert (plan.source, plan.spec, plan.requirements) == (
        tmp_path / "svc",
        "pkg.mod:Agent.handle",
        None,
    )


def test_a_module_target_copies_its_top_package(tmp_path: Path) -> None:
    (tmp_path / "app" / "handlers").mkdir(parents=True)
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "handlers" / "__init__.py").write_text("")
    (tmp_path / "app" / "handlers" / "echo.py").write_text("def f(p):\n    return p\n")
    (tmp_path / "requirements.txt").write_text("")
    plan = plan_build("app.handlers.echo:f", tmp_path)
    assert (plan.source, plan.copy_as, plan.spec) == (
        tmp_path / "app",
        "app",
        "app.handlers.echo:f",
    )
    assert plan.requirements == tmp_path / "requirements.txt"


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("handler.py", "expected FILE.py:FUNC"),
        ("missing.py:f", "no such file"),
        ("h/agent.py:not-a-name", "is not a function name"),
        ("nowhere.mod:f", "module 'nowhere.mod' not found"),
        ("h:agent", "is not a handler spec"),
    ],
)
def test_bad_targets_are_refused_naming_the_problem(tmp_path: Path, target: str, says: str) -> None:
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "agent.py").write_text("")
    with pytest.raises(ImageError, match=says):
        plan_build(target, tmp_path)


def test_engine_order_is_podman_docker_buildah() -> None:
    on_path = {"docker": "/usr/bin/docker", "buildah": "/usr/bin/buildah"}
    assert find_engine(which=on_path.get) == "/usr/bin/docker"
    assert find_engine("buildah", which=on_path.get) == "/usr/bin/buildah"
    with pytest.raises(
        ImageError, match="no container engine found: install podman, docker or buildah"
    ):
        find_engine(which=lambda _: None)
    with pytest.raises(ImageError, match="'podman' not found"):
        find_engine("podman", which=on_path.get)
    with pytest.raises(ImageError, match="expected one of podman, docker, buildah"):
        find_engine("kaniko", which=on_path.get)


def test_build_command_passes_the_handler_and_runtime_image() -> None:
    argv = build_command(
        "/usr/bin/buildah", Path("/ctx"), "me/a:1", runtime_image="r:1", spec="m:f"
    )
    assert argv[:2] == ["/usr/bin/buildah", "bud"]
    assert argv[argv.index("-t") + 1] == "me/a:1"
    assert "HANDLER=m:f" in argv and "RUNTIME_IMAGE=r:1" in argv and argv[-1] == "/ctx"
    assert (
        build_command("/usr/bin/podman", Path("/ctx"), "t", runtime_image="r", spec="m:f")[1]
        == "build"
    )


def test_no_engine_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # no podman, docker or buildah on PATH
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "asya_dev.image",
            "build",
            "examples/handlers/tokens.py:stream",
            "-t",
            "x",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "asya image: no container engine found: install podman, docker or buildah "
        "(e.g. `apt-get install podman`)"
    ]


NO_ENGINE = (
    "asya image: no container engine found: install podman, docker or buildah "
    "(e.g. `apt-get install podman`)"
)
# Stands in for a machine without the gateway extra: these imports fail in the child.
BLOCKER = """
import sys
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"starlette", "uvicorn", "rich", "httpx", "structlog",
                                  "prometheus_client", "anyio", "msgspec"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def test_asya_image_build_needs_no_extra_and_says_when_no_engine(tmp_path: Path) -> None:
    """The `asya` console script, its gateway extra's packages unimportable and nothing on
    PATH: `asya image build` still runs (stdlib only) and refuses in one line, exit 2."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    empty = tmp_path / "bin"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty), PYTHONPATH=str(tmp_path))
    argv = [console_script("asya"), "image", "build", "examples/handlers/tokens.py:stream"]
    p = subprocess.run(
        [*argv, "-t", "x"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert (p.returncode, p.stderr.strip().splitlines()) == (2, [NO_ENGINE]), p.stderr
    # The blocker works: any other `asya` command asks for the extra.
    other = subprocess.run(
        [console_script("asya"), "dev", "--help"], env=env, capture_output=True, text=True
    )
    assert other.returncode == 2 and "needs the gateway extra" in other.stderr, other.stderr


def test_asya_main_image_build_without_an_engine_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from asya_dev.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(ROOT)
    assert main(["image", "build", "examples/handlers/tokens.py:stream", "-t", "x"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [NO_ENGINE]
