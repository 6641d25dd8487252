"""The IQ/OQ validation pack behind ``qms validation-report``: run the test suite (or read
its results), build the report model from the results, the requirements catalogue and the
installation facts, and write it as HTML, PDF and JSON with the SHA-256 of each file.

The report model is plain data, everything sorted, so that the same commit, environment and
results give the same files (apart from run times); workflow.validation.render draws it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow import config
from workflow.config import REPO_ROOT
from workflow.engine.core import Engine, Result
from workflow.validation.catalogue import (
    RESULTS_FORMAT,
    Catalogue,
    CatalogueError,
    load_catalogue,
    trace,
    verdict,
)
from workflow.validation.iq import gather_iq
from workflow.validation.render import render_html, render_pdf

log = logging.getLogger(__name__)

REPORT_FORMAT = "qms-validation-report/1"


class PackError(Exception):
    """The validation pack cannot be written (bad catalogue, no or malformed results)."""


@dataclass(frozen=True)
class Pack:
    """A written validation pack: the report model and the SHA-256 of the HTML and PDF."""

    report: dict[str, Any]
    html_path: Path
    pdf_path: Path
    digests: dict[Path, str]


def load_results(path: str | Path) -> dict[str, Any]:
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path}: not a results file written by `pytest --trace-report` "
                         f"(format {RESULTS_FORMAT})")
    data["_sha256"] = hashlib.sha256(raw).hexdigest()
    return data


def build_report(results: Mapping[str, Any], catalogue: Catalogue, iq: Mapping[str, Any]
                 ) -> dict[str, Any]:
    """The whole report as plain data (rendered to HTML and PDF), everything sorted."""
    tests = sorted(results.get("tests", []), key=lambda t: t["nodeid"])
    by_node = {t["nodeid"]: t for t in tests}
    tr = trace(catalogue, {t["nodeid"]: t.get("requirements", []) for t in tests})
    rows = []
    for r in catalogue.sorted():
        linked = [by_node[n] for n in tr.tests.get(r.id, [])]
        v = verdict([t["outcome"] for t in linked])
        if r.status == "planned":
            v = f"planned (#{r.issue})" if r.issue else "planned (no issue yet)"
        rows.append({
            "id": r.id, "text": r.text, "clause": r.clause, "risk": r.risk, "status": r.status,
            "issue": r.issue, "note": r.note, "verdict": v,
            "tests": [{"nodeid": t["nodeid"], "outcome": t["outcome"],
                       "duration": t.get("duration", 0.0),
                       "via": "catalogue" if t["nodeid"] in tr.via_catalogue.get(r.id, [])
                       and r.id not in t.get("requirements", []) else "test"}
                      for t in linked],
        })
    totals: dict[str, int] = {}
    for t in tests:
        totals[t["outcome"]] = totals.get(t["outcome"], 0) + 1
    impl = [row for row in rows if row["status"] == "implemented"]
    req_totals = {
        "requirements": len(rows),
        "implemented": len(impl),
        "planned": len(rows) - len(impl),
        "with tests": sum(1 for row in rows if row["tests"]),
        "implemented, passing": sum(1 for row in impl if row["verdict"] == "pass"),
        "implemented, failing": sum(1 for row in impl if row["verdict"] == "FAIL"),
        "implemented, without test": sum(1 for row in impl if row["verdict"] == "no test"),
        "implemented, not run": sum(1 for row in impl if row["verdict"] in ("not run",
                                                                            "incomplete")),
        "high risk, implemented, without test": sum(
            1 for row in impl if row["verdict"] == "no test" and row["risk"] == "high"),
    }
    failing_tests = [t["nodeid"] for t in tests if t["outcome"] in ("failed", "error", "xpassed")]
    gate = tr.gate_failures(catalogue) if results.get("session", {}).get("full_suite") else []
    unknown = results.get("unknown_ids", [])
    conclusion = "PASS" if (tests and not failing_tests and not gate and not unknown
                            and req_totals["implemented, failing"] == 0) else "FAIL"
    deviations = ([f"test {n}: {by_node[n]['outcome']}" for n in failing_tests]
                  + gate + [f"unknown requirement ID: {u}" for u in unknown])
    if not results.get("session", {}).get("full_suite"):
        deviations.append("the test run was not the whole suite (selection or subset): "
                          "coverage was not checked")
    return {
        "format": REPORT_FORMAT,
        "iq": dict(iq),
        "session": dict(results.get("session", {})),
        "rows": rows,
        "tests": tests,
        "test_totals": dict(sorted(totals.items())),
        "requirement_totals": req_totals,
        "conclusion": conclusion,
        "deviations": deviations,
        "results_sha256": results.get("_sha256", ""),
    }


def run_suite(results_path: Path, extra_args: Iterable[str] = ()) -> tuple[int, str]:
    """Run the project's test suite with the traceability plugin writing ``results_path``."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "--trace-report", str(results_path), *extra_args]
    # the tests build their own databases; the installation's QMS_ settings (its database,
    # its keys) are kept away from them, except the documented test database variable
    env = config.environment_without_qms(keep=("QMS_TEST_DATABASE_URL",))
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def default_out_dir() -> Path:
    """<QMS_INSTANCE_DIR>/validation-report (instance/ in the checkout by default)."""
    return config.settings().instance_dir / "validation-report"


def write_pack(*, results_path: str | Path | None = None, out_dir: str | Path | None = None,
               catalogue_path: str | Path | None = None, pytest_args: str = "",
               say: Callable[[str], None] = log.info) -> Pack:
    """Write the IQ/OQ validation report (HTML, PDF, JSON) into ``out_dir`` from the results
    JSON at ``results_path``, or from a run of the test suite (with ``pytest_args``; its
    output and results are kept next to the report). ``say`` hears about the long steps."""
    if catalogue_path is None and not (REPO_ROOT / "tests").is_dir():
        # an installed wheel carries neither the test suite nor docs/requirements.yaml
        raise PackError("the validation report runs the test suite of a source checkout of "
                        "this version and reads its docs/requirements.yaml: run it in the "
                        "checkout (`python -m webapp.cli validation-report`), or give "
                        "--results and --requirements from one")
    try:
        catalogue = load_catalogue(catalogue_path)
    except CatalogueError as exc:
        raise PackError("requirements catalogue " + exc.path + ": "
                        + "; ".join(exc.problems)) from None
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    if results_path is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "results.json"
            extra = shlex.split(pytest_args)
            if catalogue_path:
                extra += ["--requirements", str(Path(catalogue_path).resolve())]
            say("running the test suite (this takes a minute)...")
            code, output = run_suite(path, extra)
            if not path.exists():
                tail = "\n".join(output.strip().splitlines()[-15:])
                raise PackError(f"the test run wrote no results (exit status {code}):\n{tail}")
            (out / "pytest-output.txt").write_text(output, encoding="utf-8")
            results = load_results(path)
            (out / "results.json").write_bytes(path.read_bytes())
    else:
        try:
            results = load_results(results_path)
        except ValueError as exc:
            raise PackError(str(exc)) from None
    report = build_report(results, catalogue, gather_iq(catalogue=catalogue))
    html_path, pdf_path = out / "validation-report.html", out / "validation-report.pdf"
    html_path.write_text(render_html(report), encoding="utf-8")
    render_pdf(report, pdf_path)
    (out / "validation-report.json").write_text(
        json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (html_path, pdf_path)}
    return Pack(report, html_path, pdf_path, digests)


def submit_pack(engine: Engine, pack: Pack, username: str) -> Result:
    """Start a validation_report record holding the PDF's SHA-256 and path, for QA to
    approve with an e-signature."""
    report = pack.report
    product = report["iq"]["product"]
    return engine.start("validation_report", username, {
        "title": f"Validation report {product['version']} at {product['commit'][:12]}",
        "report_path": str(pack.pdf_path.resolve()),
        "report_sha256": pack.digests[pack.pdf_path],
        "html_sha256": pack.digests[pack.html_path],
        "product_version": product["version"],
        "git_commit": product["commit"][:64],
        "conclusion": report["conclusion"],
        "summary": "; ".join(f"{k}: {v}" for k, v in report["requirement_totals"].items()),
    })
