"""``qms definitions validate``: no database needed; every problem a located line, never a
traceback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from tests.factories import Qms
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR


@pytest.fixture
def nodb(tmp_path: Path) -> Iterator[Qms]:
    """The command runner pointed at a database file that is never created."""
    q = Qms(f"sqlite:///{tmp_path / 'unused.db'}")
    yield q
    q.close()
    assert not (tmp_path / "unused.db").exists()


def no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output


def test_validate_shipped_definitions(nodb):
    """R-P11-10k-1 R-A11-4-1: every shipped definition validates; one summary line per file."""
    files = sorted(str(p) for p in DEFAULT_DEFINITIONS_DIR.glob("*.yaml"))
    result = nodb("definitions", "validate", *files)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(files)
    for f, line in zip(files, lines, strict=True):
        assert line.startswith(f"{f}: ok: {Path(f).stem} (")
        assert re.search(r"\d+ states .* sha256 [0-9a-f]{12}$", line), line


BROKEN = """\
key: demo
title: Demo workflow
prefix: DEMO
roles:
  qa: Quality Assurance
fields:
  title: {type: string}
start:
  roles: [qa]
  edits: [title]
  requires: [title]
states:
  draft:
    initial: true
    owner: initiator
  closed:
    final: true
    outcome: done
transitions:
  - name: approve
    from: draft
    to: closd
    roles: [qa]
  - name: reject
    from: draft
    to: closed
    roles: [auditor]
"""


def test_validate_broken_file_lists_each_problem_with_its_line(nodb, tmp_path):
    """R-P11-10k-1 R-A11-5-1: a file with two errors: exit 1, each problem printed as
    file:line: message, at the line of the offending value; a good file alongside still
    gets its summary line."""
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN)
    good = str(DEFAULT_DEFINITIONS_DIR / "capa.yaml")
    result = nodb("definitions", "validate", str(bad), good)
    assert result.exit_code == 1, result.output
    no_traceback(result)
    lines = result.output.splitlines()
    assert lines[:2] == [
        f"{bad}:22: transition 'approve' goes to unknown state 'closd'",
        f"{bad}:27: role 'auditor' is used but not declared under roles:",
    ]
    assert lines[2].startswith(f"{good}: ok: capa (")
    assert len(lines) == 3


@pytest.mark.parametrize("content, line, message", [
    ("key: demo\ntitle: [unclosed\nprefix: X\n", None, "YAML syntax error"),
    ("key: demo\n\tbad: tab\n", 2, "YAML syntax error"),
    ("- a\n- b\n", 1, "the top level must be a mapping"),
    ("", 1, "the file is empty"),
])
def test_validate_malformed_yaml_gives_a_located_line(nodb, tmp_path, content, line, message):
    """R-A11-5-1: malformed YAML is one located line, never a traceback."""
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    result = nodb("definitions", "validate", str(f))
    assert result.exit_code == 1, result.output
    no_traceback(result)
    [out] = result.output.splitlines()
    m = re.fullmatch(rf"{re.escape(str(f))}:(\d+): (.+)", out)
    assert m, out
    if line is not None:
        assert int(m.group(1)) == line
    assert m.group(2).startswith(message)


def test_validate_missing_file(nodb, tmp_path):
    """R-A11-5-1: a file that cannot be read is a located line too."""
    result = nodb("definitions", "validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    no_traceback(result)
    assert result.output.startswith(f"{tmp_path / 'nope.yaml'}:1: cannot read the file")


