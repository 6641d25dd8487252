"""Input that must not hurt, below the web layer (issue 14, item 8): YAML limits checked
before anything is composed, CSV cells a spreadsheet would run neutralised, trivially
repetitive passwords recognised."""

from __future__ import annotations

import csv
import io
import time

import pytest

from webapp import csvexport
from workflow.change_control.plan_file import PlanInvalid, parse_plan
from workflow.errors import DefinitionError
from workflow.identity.passwords import MAX_LENGTH, repetitive, usable
from workflow.spec import source
from workflow.spec.load import load_text

#: 306 bytes that expand to 9**9 (387 million) scalars when composed naively
BOMB = "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['x'] * 9)}]\n"
    for p, n in zip([None, *"abcdefgh"], "abcdefghi", strict=True)
)


def test_an_alias_bomb_is_refused_at_its_line_in_milliseconds():
    """R-SEC-30: a few hundred bytes of nested aliases are refused before composing, with
    file:line and what to do; the check takes milliseconds of CPU, not the 35 s of a naive parse."""
    assert len(BOMB) < 400
    t = time.process_time()
    with pytest.raises(DefinitionError) as exc:
        load_text(BOMB, origin="bomb.yaml")
    assert time.process_time() - t < 1.0
    (p,) = exc.value.problems
    assert p.file == "bomb.yaml" and p.line == 5
    assert "expands to more than 50,000 values" in p.message and "&name" in p.message


def test_deep_nesting_and_oversized_text_are_refused_with_a_problem_not_a_crash():
    """R-SEC-30: 20,000 nested brackets (which overflow the recursive composer) and a text
    over the size limit give one located problem each."""
    with pytest.raises(DefinitionError) as exc:
        load_text("[" * 20_000 + "]" * 20_000, origin="deep.yaml")
    assert "nested more than 40 levels" in exc.value.problems[0].message
    with pytest.raises(DefinitionError) as exc:
        load_text("key: " + "x" * (source.MAX_SOURCE_BYTES + 1), origin="big.yaml")
    assert "at most 262,144 bytes" in exc.value.problems[0].message
    with pytest.raises(DefinitionError) as exc:
        load_text("key: a\ntitle: \x00\n", origin="nul.yaml")
    assert exc.value.problems[0].line == 2 and "NUL" in exc.value.problems[0].message


def test_ordinary_aliases_and_the_shipped_definitions_stay_within_the_limits():
    """R-SEC-30: the limits leave room: every shipped definition and a modest use of
    anchors pass the check."""
    for path in sorted(source.SCHEMA_PATH.parent.glob("*.yaml")):
        assert source.limit_problem(path.read_text(), str(path)) is None, path
    assert source.limit_problem("a: &x {b: 1, c: [1, 2]}\nd: *x\ne: *x\n", "ok") is None


def test_a_migration_plan_bomb_is_refused_as_an_invalid_plan():
    """R-SEC-30: migration plans are YAML too; the same limits apply."""
    with pytest.raises(PlanInvalid) as exc:
        parse_plan(BOMB, origin="plan.yaml")
    assert "plan.yaml:5" in str(exc.value.problems[0])


@pytest.mark.parametrize(
    "cell, shown",
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-3", "-3"),
        ("-0.25", "-0.25"),
        ("+4e3", "+4e3"),
        ("plain = text", "plain = text"),
        ("", ""),
        (None, None),
        (-7, -7),
        (2.5, 2.5),
    ],
)
def test_csv_cells_a_spreadsheet_would_run_are_neutralised(cell, shown):
    """R-SEC-32: a cell starting with = + - @ (or tab/CR) gets a leading apostrophe;
    numbers and plain-number text are unchanged, nothing else in the cell changes."""
    assert csvexport.safe_cell(cell) == shown


def test_csv_text_round_trips_with_an_optional_byte_order_mark():
    """R-SEC-32: the export reads back as written (apart from the apostrophe) and starts
    with a UTF-8 BOM only when asked."""
    rows = [["CAPA-1", "=1+1", "Größe ✓"], [1, -2, None]]
    plain = csvexport.write(rows, ["number", "title", "note"])
    assert not plain.startswith("\ufeff")
    assert list(csv.reader(io.StringIO(plain))) == [
        ["number", "title", "note"],
        ["CAPA-1", "'=1+1", "Größe ✓"],
        ["1", "-2", ""],
    ]
    excel = csvexport.write(rows, ["number", "title", "note"], bom=True)
    assert excel.encode("utf-8").startswith(b"\xef\xbb\xbf") and excel[1:] == plain


@pytest.mark.parametrize(
    "password",
    [
        "aaaaaaaaaaaaaaaa",
        "abababababababab",
        "abcabcabcabcabc",
        "1212121212121212",
        "abcdefghijklmnop",
        "zyxwvutsrqpo",
        "qwqwqwqwqwqweeee",
        "Passw0rdPassw0rd",
    ],
)
def test_trivially_repetitive_passwords_are_recognised(password):
    """R-SEC-34: one character, a short unit repeated, few distinct characters or a run
    with one step are trivially repetitive."""
    assert repetitive(password)


def test_ordinary_passwords_are_not_repetitive_and_length_and_nul_make_a_password_unusable():
    """R-SEC-34: real passphrases pass; over MAX_LENGTH characters or a NUL is unusable."""
    for ok in ("Correct-Horse-Battery-9", "tr0ub4dor&3-xkcd", "a1b2c3d4e5f6g7h9"):
        assert not repetitive(ok)
    assert usable("x" * MAX_LENGTH) and not usable("x" * (MAX_LENGTH + 1))
    assert not usable("good-password\x00")
