"""The wheel carries everything the running system reads (issue 16).

Builds the wheel from the tracked files (as .ci/run does) and inspects its file list; the
install-and-run check from outside the checkout is .ci/run's (.ci/wheel_smoke.py). Marked
``slow``: building takes some seconds and needs the build backend (pip's isolated build).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from workflow.config import REPO_ROOT

pytestmark = pytest.mark.slow


def _tracked(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (root / p).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], str]:
    """(the wheel's file names, the build log)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist = tmp / "src", tmp / "dist"
    src.mkdir()
    archive = tmp / "src.tar"
    with tarfile.open(archive, "w") as tar:
        for name in _tracked(REPO_ROOT):
            tar.add(REPO_ROOT / name, arcname=name)
    with tarfile.open(archive) as tar:
        tar.extractall(src, filter="data")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w",
                           str(dist), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"the wheel did not build:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    (built,) = dist.glob("qms_workflow-*.whl")
    with zipfile.ZipFile(built) as z:
        return set(z.namelist()), proc.stdout + proc.stderr


def test_wheel_carries_what_the_running_system_reads(wheel: tuple[set[str], str]) -> None:
    """R-OPS-1: the shipped definitions, their JSON Schema, the schedules, the migrations,
    the web templates, static files and the vendored editor, the notification templates and
    the engine's data files are all in the wheel; nothing from tests/ or docs/."""
    names, _ = wheel
    expected = {f"definitions/{p.name}" for p in (REPO_ROOT / "definitions").glob("*.yaml")}
    assert len(expected) >= 9
    expected |= {
        "definitions/__init__.py",
        "definitions/workflow.schema.json",
        "definitions/schedules/schedules.yaml",
        "migrations/alembic.ini",
        "migrations/script.py.mako",
        "migrations/env.py",
        "workflow/data/common-passwords.txt.gz",
        "workflow/data/esignature-policy.txt",
    }
    for folder in ("webapp/templates", "webapp/static", "notifications/templates",
                   "migrations/versions"):
        files = [p for p in (REPO_ROOT / folder).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
        assert files, folder
        expected |= {p.relative_to(REPO_ROOT).as_posix() for p in files}
    assert "webapp/static/vendor/codemirror/codemirror.js" in expected
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"
    assert not [n for n in names if n.startswith(("tests/", "docs/", "bench/", "instance/"))]


def test_every_package_is_found(wheel: tuple[set[str], str]) -> None:
    """R-OPS-1: package discovery finds every package of the source tree (a new
    subpackage cannot be left out), and the build declares every data folder (no
    "Package ... is absent from the packages configuration" warning)."""
    names, log = wheel
    packages = {p.parent.relative_to(REPO_ROOT).as_posix()
                for top in ("workflow", "webapp", "notifications", "migrations", "definitions")
                for p in (REPO_ROOT / top).rglob("__init__.py")}
    assert {f"{p}/__init__.py" for p in packages} <= names
    assert "is absent from the `packages` configuration" not in log
