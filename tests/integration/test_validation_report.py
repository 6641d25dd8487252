"""`qms validation-report` (R-P11-10a-1, R-P11-10a-3, R-A11-P-1, R-WF-7): a small synthetic
suite's results become an IQ/OQ report in HTML and PDF (the PDF's text is read back with
pypdf), the IQ names the real installed versions, the same inputs give identical files, and
`--submit-as` stores the report as a record that QA approves with an e-signature.

The CLI runs in-process through click's CliRunner against a committed database of the test's
own; the synthetic suite runs in-process with pytester.
"""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

import pypdf
import pytest

from tests.conftest import TEST_KEY
from tests.factories import Qms, sign
from workflow.db import engines as db
from workflow.errors import LOGIN_FAILED, WorkflowError
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR

pytest_plugins = ["pytester"]

CATALOGUE = """\
requirements:
- {id: R-SYN-1, text: Signatures are linked to records, clause: 21 CFR 11.70, risk: high,
   status: implemented}
- {id: R-SYN-2, text: The audit trail is append-only, clause: 21 CFR 11.10(e), risk: high,
   status: implemented}
- {id: R-SYN-3, text: Dashboards show KPIs, clause: functional, risk: medium, status: planned,
   issue: 6}
- {id: R-SYN-4, text: The inbox lists tasks, clause: functional, risk: low, status: implemented}
"""

SUITE = '''
import pytest

def test_sig_ok():
    """R-SYN-1"""

@pytest.mark.req("R-SYN-1", "R-SYN-2")
def test_trail_ok():
    pass

def test_trail_broken():
    """R-SYN-2"""
    assert 1 == 2
'''


@pytest.fixture
def synthetic(pytester: pytest.Pytester) -> tuple[Path, Path]:
    """(catalogue, results JSON) of a three-test suite with one failure. Both files live in
    the pytester directory: pytest takes path-like option values into account for rootdir."""
    cat = pytester.path / "requirements.yaml"
    cat.write_text(CATALOGUE, encoding="utf-8")
    pytester.makepyfile(test_syn=SUITE)
    results = pytester.path / "results.json"
    run = pytester.runpytest("-p", "tests.traceability", "--requirements", str(cat),
                             "-p", "no:cacheprovider", "--trace-report", str(results))
    run.assert_outcomes(passed=2, failed=1)
    return cat, results


@pytest.fixture
def qms(committed_url: str):
    q = Qms(committed_url, TEST_KEY.hex())
    yield q
    q.close()


def pdf_text(path: Path) -> str:
    """The PDF's text with line breaks removed (table cells wrap long node ids)."""
    reader = pypdf.PdfReader(str(path))
    return "".join(p.extract_text() for p in reader.pages).replace("\n", "")


@pytest.mark.committed
def test_report_for_a_synthetic_suite_has_the_expected_rows(qms, synthetic, tmp_path):
    """R-P11-10a-1 R-A11-P-1: each requirement -> its tests -> outcome; planned ones are marked;
    the failure and the untested high-risk requirement are deviations; both files written."""
    cat, results = synthetic
    out = tmp_path / "report"
    res = qms("validation-report", "--results", str(results), "--out", str(out),
              "--requirements", str(cat))
    assert res.exit_code == 0, res.output
    assert "conclusion: FAIL" in res.output
    text = pdf_text(out / "validation-report.pdf")
    html = (out / "validation-report.html").read_text()
    for doc in (text, html):
        assert "Operational qualification (OQ)" in doc
        assert "Installation qualification (IQ)" in doc
        assert "Reviewed and approved by (Quality Assurance)" in doc  # signature block
    # OQ rows: requirement, verdict, test, outcome
    assert "R-SYN-1Signatures are linked to records21 CFR 11.70highimplementedpass" \
           "test_syn.py::test_sig_okpassed" in text
    assert "R-SYN-1test_syn.py::test_trail_okpassed" in text
    assert "R-SYN-2The audit trail is append-only21 CFR 11.10(e)highimplementedFAIL" \
           "test_syn.py::test_trail_brokenfailed" in text
    assert "R-SYN-2test_syn.py::test_trail_okpassed" in text
    assert "R-SYN-3Dashboards show KPIsfunctionalmediumplanned (#6)planned (#6)-" in text
    assert "R-SYN-4The inbox lists tasksfunctionallowimplementedno test-" in text
    # summary and deviations
    assert "conclusionFAIL" in text
    assert "tests failed1" in text and "tests passed2" in text
    assert "- test test_syn.py::test_trail_broken: failed" in text
    # the synthetic run was a whole suite: coverage was checked, R-SYN-4 is low risk
    assert "has no test" not in text


@pytest.mark.committed
def test_iq_lists_the_real_installed_versions_and_checksums(qms, synthetic, tmp_path):
    """R-P11-10a-3: product, Python and package versions from importlib.metadata, the schema
    revision against the Alembic head, masked secrets and definition/migration checksums."""
    cat, results = synthetic
    out = tmp_path / "report"
    res = qms("validation-report", "--results", str(results), "--out", str(out),
              "--requirements", str(cat))
    assert res.exit_code == 0, res.output
    text = pdf_text(out / "validation-report.pdf")
    html = (out / "validation-report.html").read_text()
    for name in ("SQLAlchemy", "alembic", "reportlab", "pypdf", "pytest", "Flask"):
        version = metadata.version(name)
        assert f"<td>{name.lower()}</td><td>{version}</td>" in html, name
        assert f"{name.lower()}{version}" in text, name
    assert f"qms-workflow {metadata.version('qms-workflow')}" in text
    assert f"{platform.python_implementation()} {platform.python_version()}" in text
    head = db.head_revision()
    assert f"schema revision (database){head}" in text
    assert f"schema revision (Alembic head of the code){head}" in text
    assert "schema statusup to date" in text
    assert "QMS_SIGNATURE_KEY(set, masked)environment" in text
    assert TEST_KEY.hex() not in html and TEST_KEY.hex() not in text
    for f in ("validation_report.yaml", "workflow.schema.json"):
        digest = hashlib.sha256((DEFAULT_DEFINITIONS_DIR / f).read_bytes()).hexdigest()
        assert f"definitions/{f}{digest}" in text
    mig = sorted((DEFAULT_DEFINITIONS_DIR.parent / "migrations" / "versions").glob("0*.py"))[0]
    assert f"migrations/versions/{mig.name}{hashlib.sha256(mig.read_bytes()).hexdigest()}" \
        in text


@pytest.mark.committed
def test_same_inputs_give_identical_report_files(qms, synthetic, tmp_path):
    """R-WF-7: reproducible: the same commit, environment and results give byte-identical
    HTML, PDF and JSON (everything sorted; the PDF is written in invariant mode)."""
    cat, results = synthetic
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        res = qms("validation-report", "--results", str(results), "--out", str(out),
                  "--requirements", str(cat))
        assert res.exit_code == 0, res.output
    for name in ("validation-report.html", "validation-report.pdf", "validation-report.json"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


@pytest.mark.committed
def test_submitted_report_is_approved_by_qa_with_a_signature(qms, synthetic, tmp_path,
                                                             committed_engine, request):
    """R-WF-7 R-P11-50-1 R-P11-10g-2: --submit-as starts a validation_report record holding the
    PDF's SHA-256 and path; the submitter cannot approve it, another QA signs "Approved"."""
    eng = committed_engine
    with eng.unit() as s:
        actor = identity.system_user(s)
        for name, roles in (("vera", ("system_owner", "qa")), ("quinn", ("qa",))):
            u = identity.create_user(s, name, name.title() + " Tester", email="", actor=actor,
                                     reason="test")
            for r in roles:
                identity.grant_role(s, u, r, actor=actor, reason="test")
            enablement.enable_for_system(s, u, reason="test")
    cat, results = synthetic
    out = tmp_path / "report"
    # vera (QA) has no authenticator yet: she submits in maintenance mode (R-SEC-35)
    qms = Qms(qms.url, TEST_KEY.hex(), env={"QMS_CLI_MAINTENANCE": "1"})
    request.addfinalizer(qms.close)
    res = qms("validation-report", "--results", str(results), "--out", str(out),
              "--requirements", str(cat), "--submit-as", "vera", "--maintenance")
    assert res.exit_code == 0, res.output
    assert "VAL-2026-0001 created in state in_review" in res.output
    pdf = out / "validation-report.pdf"
    with eng.reader() as s:
        rec = eng.get("VAL-2026-0001", session=s)
        assert rec.data["report_sha256"] == hashlib.sha256(pdf.read_bytes()).hexdigest()
        assert rec.data["report_path"] == str(pdf.resolve())
        assert rec.data["conclusion"] == "FAIL"

    with pytest.raises(WorkflowError):
        eng.fire("VAL-2026-0001", "approve", "vera", signature=sign("vera"))
    r = eng.fire("VAL-2026-0001", "approve", "quinn", signature=sign("quinn"))
    assert r.state == "approved"
    from sqlalchemy import select

    from workflow.db.models import Signature
    with eng.reader() as s:
        sig = s.execute(select(Signature).where(Signature.record_id == rec.id)).scalar_one()
        assert (sig.signer_username, sig.meaning) == ("quinn", "Approved")


@pytest.mark.committed
def test_bad_results_file_and_unknown_submitter_are_one_clear_line(qms, synthetic, tmp_path):
    """R-A11-5-1: a file that is not a results JSON, or an unknown submitter, gives one line."""
    cat, results = synthetic
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    res = qms("validation-report", "--results", str(bad), "--out", str(tmp_path / "x"),
              "--requirements", str(cat))
    assert res.exit_code == 1
    assert "not a results file written by `pytest --trace-report`" in res.output
    res = qms("validation-report", "--results", str(results), "--out", str(tmp_path / "y"),
              "--requirements", str(cat), "--submit-as", "nobody", "--password-stdin",
              input="whatever\n")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output == f"error: {LOGIN_FAILED}\n"  # one message, no account enumeration


@pytest.mark.committed
def test_report_pdf_embeds_unicode_fonts(committed_url, synthetic, tmp_path):
    """R-A11-P-1 R-P11-10b-1: the validation report PDF sets its text in the embedded fonts
    of the true copies (workflow/pdffonts.py): a system name in Polish and Japanese prints
    as written, and no font is a standard one the reader must supply."""
    cat, results = synthetic
    q = Qms(committed_url, TEST_KEY.hex(), env={"QMS_SYSTEM_NAME": "QMS Łódź 測試"})
    try:
        res = q("validation-report", "--results", str(results), "--out", str(tmp_path / "r"),
                "--requirements", str(cat))
    finally:
        q.close()
    assert res.exit_code == 0, res.output
    reader = pypdf.PdfReader(str(tmp_path / "r" / "validation-report.pdf"))
    assert "QMS Łódź 測試" in "".join(p.extract_text() for p in reader.pages)
    fonts = {str(f.get_object()["/BaseFont"]) for p in reader.pages
             for f in p["/Resources"]["/Font"].values()}
    assert fonts and all("+" in f for f in fonts), fonts  # subset-embedded, e.g. AAAAAA+DejaVuSans
    assert any("IPAexGothic" in f for f in fonts)
