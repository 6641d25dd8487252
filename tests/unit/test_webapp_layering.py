"""webapp/ reads through workflow/queries/ and writes through commands (issue #12): it
opens no write unit and builds no SQL statement of its own."""

from __future__ import annotations

import ast
from pathlib import Path

WEBAPP = Path(__file__).resolve().parents[2] / "webapp"
SOURCES = sorted(WEBAPP.rglob("*.py"))


def test_webapp_opens_no_write_unit():
    offenders = [f"{p.relative_to(WEBAPP)}:{n}" for p in SOURCES
                 for n, line in enumerate(p.read_text().splitlines(), 1) if ".unit()" in line]
    assert not offenders, offenders


def test_webapp_builds_no_sql_statement():
    builders = {"select", "update", "insert", "delete", "exists", "func", "text", "or_", "and_"}
    offenders = [f"{p.relative_to(WEBAPP)}:{node.lineno}" for p in SOURCES
                 for node in ast.walk(ast.parse(p.read_text()))
                 if isinstance(node, ast.ImportFrom) and node.module == "sqlalchemy"
                 and builders & {a.name for a in node.names}]
    assert not offenders, offenders
