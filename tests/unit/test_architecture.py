"""Guards that keep the layout honest (DESIGN.md, "Layout"), by reading the source files only:
no import of the code under test, no database.

Each rule that today's code does not meet yet has an explicit allowlist of today's offenders. A
NEW offender fails; so does an allowlisted file that no longer offends (remove it from the list:
the lists only shrink). Import-level rules (layers, forbidden imports, cycles) are import-linter
contracts in pyproject.toml; types are .ci/mypy_check.py.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = ("workflow", "webapp", "notifications")
MAX_LINES = 600  # hard maximum per module (target: under ~400)

# the one place a Session transaction is opened (DESIGN: db/uow, the ONLY session.begin())
UOW = "workflow/db/uow.py"
# `X.begin()` calls that are not a Session's, with the reason
OTHER_BEGIN = {
    # a Core Connection for `alembic upgrade` (the schema), not an ORM session
    ("workflow/db/engines.py", "engine.begin"),
}

# Engine.unit() opens a write transaction. The web layer and the CLI are to call commands
# (and hold one read session per request) instead.
UNIT_ALLOWLIST: set[str] = set()

# private names imported from another module, as (file, name); code has none, tests and
# bench still do. Shrinks to empty: make the shared helper public (or a fixture).
PRIVATE_IMPORT_ALLOWLIST = {
    ("bench/kpi.py", "_login"),
    ("tests/integration/test_load_definitions.py", "_drop_database"),
    ("tests/integration/test_load_definitions.py", "_new_database"),
    ("tests/integration/test_users_cli.py", "_drop_database"),
    ("tests/integration/test_users_cli.py", "_new_database"),
}

# modules over MAX_LINES; shrinks to empty
LONG_MODULE_ALLOWLIST: set[str] = set()

# workflow/ modules that read the environment (os.environ, os.getenv): config.py alone.
ENVIRON_ALLOWLIST = {
    "workflow/config.py",  # Settings: every QMS_* variable, parsed and validated once
}


def python_files(*tops: str) -> Iterator[str]:
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix()


@cache
def tree(rel: str) -> ast.Module:
    return ast.parse((ROOT / rel).read_text(encoding="utf-8"), filename=rel)


def calls(rel: str, attrs: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    """(line, source of the callee) of every ``X.<attr>(...)`` call in a file."""
    for node in ast.walk(tree(rel)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in attrs):
            yield node.lineno, ast.unparse(node.func)


def check_allowlist(offenders: dict[str, list[str]], allowlist: set[str], what: str) -> None:
    new = {f: where for f, where in offenders.items() if f not in allowlist}
    fixed = sorted(allowlist - offenders.keys())
    message = []
    if new:
        message.append(f"{what} (new):\n" + "\n".join(
            f"  {f}: {', '.join(where)}" for f, where in sorted(new.items())))
    if fixed:
        message.append(f"no longer offends ({what}); remove from the allowlist: {', '.join(fixed)}")
    assert not message, "\n".join(message)


def test_the_tree_is_there() -> None:
    # the guards below would pass vacuously if they read nothing
    assert (ROOT / UOW).is_file()
    assert len(list(python_files("workflow"))) > 50


def test_session_begin_only_in_the_unit_of_work() -> None:
    offenders: dict[str, list[str]] = {}
    for rel in python_files(*CODE):
        if rel == UOW:
            continue
        for line, callee in calls(rel, ("begin", "begin_nested")):
            if (rel, callee) not in OTHER_BEGIN:
                offenders.setdefault(rel, []).append(f"{callee}() at line {line}")
        if "session.begin(" in (ROOT / rel).read_text(encoding="utf-8"):
            offenders.setdefault(rel, []).append("session.begin(")
    assert not offenders, f"transactions are opened only in {UOW}: {offenders}"
    assert any(callee == "session.begin" for _, callee in calls(UOW, ("begin",)))
    for rel, callee in OTHER_BEGIN:
        assert any(c == callee for _, c in calls(rel, ("begin",))), f"stale: {rel} {callee}"


def test_no_unit_of_work_in_the_web_layer_or_the_cli() -> None:
    offenders: dict[str, list[str]] = {}
    for rel in python_files("webapp", "workflow/cli"):
        for line, callee in calls(rel, ("unit",)):
            offenders.setdefault(rel, []).append(f"{callee}() at line {line}")
    check_allowlist(offenders, UNIT_ALLOWLIST, ".unit() in webapp/ or workflow/cli/")


def test_no_private_name_imported_from_another_module() -> None:
    found: dict[tuple[str, str], int] = {}
    for rel in python_files(*CODE, "tests", "bench", "migrations"):
        for node in ast.walk(tree(rel)):  # function-local imports too
            if isinstance(node, ast.ImportFrom):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [part for a in node.names for part in a.name.split(".")]
            else:
                continue
            for name in names:
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    found.setdefault((rel, name), node.lineno)
    new = {k: line for k, line in found.items() if k not in PRIVATE_IMPORT_ALLOWLIST}
    fixed = PRIVATE_IMPORT_ALLOWLIST - found.keys()
    assert not new, "private names imported (make them public): " + ", ".join(
        f"{rel}:{line} {name}" for (rel, name), line in sorted(new.items()))
    assert not fixed, f"no longer imported; remove from the allowlist: {sorted(fixed)}"


def test_every_workflow_module_is_at_most_600_lines() -> None:
    offenders = {}
    for rel in python_files("workflow"):
        n = len((ROOT / rel).read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            offenders[rel] = [f"{n} lines"]
    check_allowlist(offenders, LONG_MODULE_ALLOWLIST, f"modules over {MAX_LINES} lines")


def reads_environment(rel: str) -> list[str]:
    where = []
    for node in ast.walk(tree(rel)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "os" and node.attr in ("environ", "environb", "getenv")):
            where.append(f"os.{node.attr} at line {node.lineno}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            where += [f"from os import {a.name} at line {node.lineno}" for a in node.names
                      if a.name in ("environ", "environb", "getenv")]
    return where


def test_workflow_reads_the_environment_only_in_the_allowlist() -> None:
    offenders = {rel: where for rel in python_files("workflow") if (where := reads_environment(rel))}
    check_allowlist(offenders, ENVIRON_ALLOWLIST, "os.environ read in workflow/")


@pytest.mark.parametrize("source, expected", [
    ("import os\nx = os.environ.get('A')\n", ["os.environ at line 2"]),
    ("from os import getenv\n", ["from os import getenv at line 1"]),
    ("import os\nx = os.path.join('a')\n", []),
])
def test_environment_detector(source: str, expected: list[str], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "m.py").write_text(source)
    tree.cache_clear()
    try:
        assert reads_environment("m.py") == expected
    finally:
        tree.cache_clear()
