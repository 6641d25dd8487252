"""Where the files the running system ships with are: the workflow definitions, their JSON
Schema and the schedules (the ``definitions`` package), the migrations (``migrations``) and
the engine's own data (``workflow/data``).

Each is found through the installed package (:mod:`importlib.resources`), never relative to
a source checkout, so an installed wheel works from any directory (issue 16). Packages are
installed unzipped (wheels), so every location is a real directory on disk.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_dir(package: str) -> Path:
    """The directory of an installed package (a regular package, on disk)."""
    path = Path(str(files(package)))
    if not path.is_dir():  # pragma: no cover - a zipped install, which we do not support
        raise RuntimeError(f"the package {package!r} is not a directory on disk ({path}): "
                           "install the qms-workflow wheel unzipped (pip does)")
    return path


def definitions_dir() -> Path:
    """The shipped workflow definitions (``*.yaml``), ``workflow.schema.json`` and
    ``schedules/schedules.yaml``: the top-level ``definitions`` package."""
    return package_dir("definitions")


def migrations_dir() -> Path:
    """The Alembic environment and versions: the top-level ``migrations`` package."""
    return package_dir("migrations")


def data_file(name: str) -> Path:
    """A file of ``workflow/data`` (password list, e-signature policy text)."""
    return package_dir("workflow") / "data" / name
