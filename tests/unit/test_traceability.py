"""Requirement traceability (R-P11-10a-1, R-A11-4-1): the pytest plugin in tests/traceability.py
and the catalogue checks in workflow/validation/.

Synthetic suites run in-process with pytester against a small catalogue of their own, so that
the real catalogue and suite are not involved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflow.validation import catalogue as val
from workflow.validation import iq

pytest_plugins = ["pytester"]

CATALOGUE = """\
requirements:
- {id: R-T-1, text: Signed records are linked, clause: 21 CFR 11.70, risk: high, status: implemented}
- {id: R-T-2, text: Audit trail is kept, clause: 21 CFR 11.10(e), risk: high, status: implemented}
- {id: R-T-3, text: Inbox lists tasks, clause: functional, risk: low, status: implemented}
- {id: R-T-4, text: KPIs are shown, clause: functional, risk: high, status: planned, issue: 6}
- {id: R-T-5, text: Same as R-T-1, clause: Annex 11 §14, risk: high, status: implemented,
   same_as: [R-T-1]}
"""

COVERING = '''
"""Module docstring naming R-T-3 (inherited by tests that name nothing)."""
import pytest

def test_linked():
    """R-T-1: a docstring ID."""

@pytest.mark.req("R-T-2")
def test_audit():
    """No ID in this docstring; the marker names it."""

def test_inherits():
    pass
'''


def run(pytester: pytest.Pytester, *args: str, catalogue: str = CATALOGUE
        ) -> pytest.RunResult:
    cat = pytester.path / "requirements.yaml"
    cat.write_text(catalogue, encoding="utf-8")
    return pytester.runpytest("-p", "tests.traceability", "--requirements", str(cat),
                              "-p", "no:cacheprovider", *args)


@pytest.mark.req("R-P11-10a-1")
def test_unknown_id_in_a_docstring_stops_the_run_naming_test_and_id(pytester):
    """R-A11-4-1: a test naming an ID that is not in the catalogue is a usage error."""
    pytester.makepyfile(test_unknown_doc='''
        def test_ok():
            """R-T-1: fine."""

        def test_typo():
            """R-T-99: no such requirement."""
        ''')
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown requirement reference*",
                                 "*test_unknown_doc.py::test_typo names unknown requirement "
                                 "ID R-T-99*"])
    result.assert_outcomes()  # nothing ran


@pytest.mark.req("R-P11-10a-1")
def test_unknown_id_in_a_marker_or_module_docstring_is_named(pytester):
    """R-A11-4-1: markers and module docstrings are checked too."""
    pytester.makepyfile(test_unknown_mark='''
        """Covers R-T-77."""
        import pytest

        @pytest.mark.req("R-T-1", "R-NOPE-1")
        def test_marked():
            pass
        ''')
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "test_unknown_mark.py::test_marked names unknown requirement ID R-NOPE-1" in err
    assert "(module docstring) names unknown requirement ID R-T-77" in err


@pytest.mark.req("R-P11-10a-1")
def test_high_risk_implemented_requirement_without_test_fails_the_run(pytester):
    """R-A11-4-1: the second requirement (high, implemented) has no test: reported, and the
    passing run fails. The low-risk one is reported without failing; the planned high-risk one
    neither fails nor is listed; the fifth is verified through same_as."""
    pytester.makepyfile(test_gap='''
        def test_linked():
            """R-T-1 only."""
        ''')
    result = run(pytester, "--req-coverage=on")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "TRACEABILITY FAILED: R-T-2 (high risk, implemented) has no test" in out
    assert "no test: R-T-3 (low risk, implemented)" in out
    assert "R-T-4" not in out and "R-T-5" not in out
    assert "5 requirements in requirements.yaml; 2 with tests; 3 without (2 implemented, " \
           "1 planned)" in out


@pytest.mark.req("R-P11-10a-1")
def test_covered_catalogue_passes_and_partial_runs_are_not_gated(pytester):
    """Docstring, marker and module-docstring IDs cover the catalogue: the run passes. A
    selection (-k) in the default auto mode reports but does not fail."""
    pytester.makepyfile(test_cover=COVERING)
    assert run(pytester, "--req-coverage=on").ret == pytest.ExitCode.OK
    partial = run(pytester, "-k", "linked")
    assert partial.ret == pytest.ExitCode.OK
    assert "coverage not enforced (partial run)" in partial.stdout.str()


@pytest.mark.req("R-P11-10a-1")
def test_trace_report_json_has_node_ids_ids_outcomes_and_durations(pytester):
    """--trace-report writes every test with its IDs, outcome and duration, sorted."""
    pytester.makepyfile(test_cover=COVERING, test_more='''
        import pytest

        def test_fails():
            """R-T-3"""
            assert False

        @pytest.mark.skip(reason="not here")
        def test_skipped():
            """R-T-3"""

        @pytest.mark.parametrize("n", [1, 2])
        def test_param(n):
            """R-T-1"""
        ''')
    out = pytester.path / "results.json"
    result = run(pytester, "--trace-report", str(out))
    result.assert_outcomes(passed=5, failed=1, skipped=1)
    data = json.loads(out.read_text())
    assert data["format"] == val.RESULTS_FORMAT
    assert data["session"]["full_suite"] is True
    tests = {t["nodeid"]: t for t in data["tests"]}
    assert list(tests) == sorted(tests)
    assert tests["test_cover.py::test_linked"]["requirements"] == ["R-T-1"]
    assert tests["test_cover.py::test_audit"]["requirements"] == ["R-T-2"]
    assert tests["test_cover.py::test_inherits"]["requirements"] == ["R-T-3"]
    assert tests["test_more.py::test_fails"]["outcome"] == "failed"
    assert tests["test_more.py::test_skipped"]["outcome"] == "skipped"
    assert tests["test_more.py::test_param[2]"]["requirements"] == ["R-T-1"]
    assert all(t["duration"] >= 0 for t in tests.values())


# ------------------------------------------------------------------ catalogue and IDs


def test_ids_in_text_ignore_record_numbers():
    """R-P11-10a-1: IDs are found in prose; record numbers such as CR-2026-0001 are not IDs."""
    text = "R-P11-10e-3 R-A11D-1: see CR-2026-0001 and R-P11-10e-1..7; (R-WF-2)."
    assert val.ids_in(text) == ["R-A11D-1", "R-P11-10e-1", "R-P11-10e-3", "R-WF-2"]
    assert sorted(["R-P11-10a-10", "R-P11-100a-1", "R-P11-10a-2"], key=val.id_sort_key) == \
        ["R-P11-10a-2", "R-P11-10a-10", "R-P11-100a-1"]


def test_catalogue_problems_are_all_named(tmp_path: Path):
    """A malformed catalogue names every problem: duplicates, bad risk, planned without issue."""
    p = tmp_path / "r.yaml"
    p.write_text("""requirements:
- {id: R-X-1, text: a, clause: c, risk: high, status: implemented}
- {id: R-X-1, text: b, clause: c, risk: huge, status: planned}
- {id: not-an-id, text: c, clause: c, risk: low, status: implemented}
- {id: R-X-2, text: d, clause: c, risk: low, status: implemented, same_as: [R-X-9]}
""")
    with pytest.raises(val.CatalogueError) as exc:
        val.load_catalogue(p)
    problems = "\n".join(exc.value.problems)
    assert "R-X-1: duplicate id" in problems
    assert "R-X-1: `risk` must be one of high, medium, low" in problems
    assert "R-X-1: a planned requirement names the issue" in problems
    assert "`id` must look like R-XXX-N (got 'not-an-id')" in problems
    assert "R-X-2: same_as names unknown requirement R-X-9" in problems


def test_shipped_catalogue_loads_and_covers_the_reference_ids():
    """R-A11-P-1: docs/requirements.yaml is valid; every planned entry says which issue."""
    cat = val.load_catalogue()
    assert len(cat.requirements) > 90
    assert {"R-P11-10a-1", "R-A11-9-1", "R-A11D-6", "R-ISO-3", "R-WF-1"} <= set(cat.requirements)
    for r in cat.requirements.values():
        assert r.status in val.STATUSES and r.risk in val.RISKS


def test_verdicts():
    """A requirement fails when any of its tests fails; skipped-only is 'not run'."""
    assert val.verdict([]) == "no test"
    assert val.verdict(["passed", "skipped"]) == "pass"
    assert val.verdict(["passed", "failed"]) == "FAIL"
    assert val.verdict(["passed", "error"]) == "FAIL"
    assert val.verdict(["skipped"]) == "not run"


def test_secrets_are_masked():
    """R-P11-10a-3: configuration in the IQ never shows a secret or a database password."""
    assert iq.mask("QMS_SIGNATURE_KEY", "ab" * 32) == "(set, masked)"
    assert iq.mask("QMS_SECRET_KEY", "x") == "(set, masked)"
    assert iq.mask("QMS_DATABASE_URL", "postgresql+psycopg://u:pw@h/db") == \
        "postgresql+psycopg://u:***@h/db"
    assert iq.mask("QMS_SIGNATURE_KEY_FILE", "/etc/qms/key") == "/etc/qms/key"
    assert iq.mask("QMS_LOCKOUT_THRESHOLD", "5") == "5"
