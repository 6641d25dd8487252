"""Requirement traceability for the test run (pytest plugin, loaded by tests/conftest.py).

Each test's requirement IDs come from its docstring (``R-P11-10e-3: ...``) and from
``@pytest.mark.req("R-...")`` markers (on the test, its class or the module's ``pytestmark``);
a test that names none inherits the IDs of its class docstring, else of its module docstring.

- A test (or a test module/class docstring) naming an ID that is not in docs/requirements.yaml
  stops the run before any test executes (usage error naming the test and the ID).
- At the end the requirements without a test are reported. When the whole suite ran
  (``--req-coverage=auto``, the default: no path/-k/-m selection, nothing deselected) or with
  ``--req-coverage=on``, an implemented high-risk requirement without a test, or a catalogue
  ``verified_by`` pattern that matches no test, fails the run.
- ``--trace-report PATH`` writes the per-test results (node id, IDs, outcome, duration) as
  JSON for ``qms validation-report --results PATH``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from workflow.validation.catalogue import (
    RESULTS_FORMAT,
    Catalogue,
    CatalogueError,
    ids_in,
    load_catalogue,
    trace,
)
from workflow.validation.iq import mask


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("traceability", "requirement traceability (validation pack)")
    group.addoption("--trace-report", metavar="PATH", default=None,
                    help="write per-test results with their requirement IDs as JSON to PATH")
    group.addoption("--requirements", metavar="PATH", default=None,
                    help="requirements catalogue (default: docs/requirements.yaml)")
    group.addoption("--req-coverage", choices=("auto", "on", "off"), default="auto",
                    help="fail on implemented high-risk requirements without a test: "
                         "auto = only when the whole suite is collected (default)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "req(*ids): requirement IDs this test verifies "
                                       "(in addition to those named in its docstring)")
    if not config.pluginmanager.has_plugin("qms-traceability"):
        config.pluginmanager.register(Traceability(config), "qms-traceability")


def _catalogue_path(config: pytest.Config) -> Path | None:
    opt = config.getoption("requirements")
    if opt:
        return Path(opt)
    local = Path(config.rootpath) / "docs" / "requirements.yaml"
    return local if local.exists() else None


class Traceability:
    def __init__(self, config: pytest.Config):
        self.config = config
        try:
            self.catalogue: Catalogue = load_catalogue(_catalogue_path(config))
        except CatalogueError as exc:
            raise pytest.UsageError("requirements catalogue: " + "; ".join(
                [exc.path] + exc.problems)) from None
        self.ids: dict[str, list[str]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.deselected = 0
        self.full_suite = False
        self.gate: list[str] = []
        self.started = datetime.now(UTC)

    # -------------------------------------------------------------- collection

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        unknown: list[str] = []
        for item in items:
            own: list[str] = []
            fn = getattr(item, "function", None)
            own += ids_in(getattr(fn, "__doc__", None))
            for mark in item.iter_markers("req"):
                for arg in mark.args:
                    if not isinstance(arg, str):
                        unknown.append(f"{item.nodeid}: @pytest.mark.req takes ID strings, "
                                       f"not {arg!r}")
                        continue
                    own.append(arg)
            inherited: list[str] = []
            cls = getattr(item, "cls", None)
            mod = getattr(item, "module", None)
            for holder, where in ((cls, "class docstring"), (mod, "module docstring")):
                named = ids_in(getattr(holder, "__doc__", None)) if holder is not None else []
                unknown += [f"{item.nodeid} ({where}) names unknown requirement ID {rid}"
                            for rid in named if rid not in self.catalogue]
                if not inherited:
                    inherited = named
            ids = sorted(set(own or inherited))
            unknown += [f"{item.nodeid} names unknown requirement ID {rid}"
                        for rid in sorted(set(own)) if rid not in self.catalogue]
            self.ids[item.nodeid] = ids
        if unknown:
            self.ids = {}  # nothing to summarise: the run stops here
            lines = sorted(set(unknown))
            raise pytest.UsageError(
                f"traceability: {len(lines)} unknown requirement reference(s) "
                f"(not in {self.catalogue.path}):\n  " + "\n  ".join(lines))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.ids = {item.nodeid: self.ids.get(item.nodeid, []) for item in session.items}
        self.full_suite = self._is_full_suite(session)

    def _is_full_suite(self, session: pytest.Session) -> bool:
        cfg = self.config
        if self.deselected or cfg.getoption("keyword", "") or cfg.getoption("markexpr", ""):
            return False
        if getattr(cfg.option, "lf", False):
            return False
        root = Path(cfg.rootpath).resolve()
        testpaths = cfg.getini("testpaths") or []
        whole = {root} | {(root / p).resolve() for p in testpaths}
        args = cfg.args or [str(root)]
        for a in args:
            if "::" in a:
                return False
            if (Path(cfg.invocation_params.dir) / a).resolve() not in whole:
                return False
        return True

    # -------------------------------------------------------------- results

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        res = self.results.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
        res["duration"] += report.duration
        xfail = hasattr(report, "wasxfail")
        if report.when == "call":
            if xfail:
                res["outcome"] = "xfailed" if report.skipped else "xpassed"
            else:
                res["outcome"] = report.outcome
        elif report.failed:
            res["outcome"] = "error"
        elif report.skipped and report.when == "setup":
            res["outcome"] = "xfailed" if xfail else "skipped"

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        tr = trace(self.catalogue, self.ids)
        mode = self.config.getoption("req_coverage")
        enforce = mode == "on" or (mode == "auto" and self.full_suite)
        self.untested = tr.untested(self.catalogue)
        if enforce and self.ids:
            self.gate = tr.gate_failures(self.catalogue)
            if self.gate and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.enforced = enforce
        path = self.config.getoption("trace_report")
        if path:
            self._write(Path(path), int(session.exitstatus))

    def _write(self, path: Path, exitstatus: int) -> None:
        finished = datetime.now(UTC)
        tests = []
        for nodeid in sorted(self.ids):
            res = self.results.get(nodeid, {"outcome": "not run", "duration": 0.0})
            tests.append({"nodeid": nodeid, "requirements": self.ids[nodeid],
                          "outcome": res["outcome"], "duration": round(res["duration"], 3)})
        db_url = os.environ.get("QMS_TEST_DATABASE_URL")
        if db_url:
            database = f"PostgreSQL ({mask('QMS_TEST_DATABASE_URL', db_url)})"
        else:
            import sqlite3

            database = f"SQLite {sqlite3.sqlite_version} (temporary file per run)"
        data = {
            "format": RESULTS_FORMAT,
            "catalogue": {"path": Path(self.catalogue.path).name,
                          "sha256": self.catalogue.sha256},
            "session": {
                "started": self.started.isoformat(timespec="seconds"),
                "finished": finished.isoformat(timespec="seconds"),
                "duration": round((finished - self.started).total_seconds(), 1),
                "exitstatus": exitstatus,
                "full_suite": self.full_suite,
                "coverage_enforced": self.enforced,
                "args": list(self.config.invocation_params.args),
                "pytest": pytest.__version__,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "executable": sys.executable,
                "database": database,
            },
            "gate_failures": self.gate,
            "unknown_ids": [],
            "tests": tests,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    # -------------------------------------------------------------- terminal

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tw = terminalreporter
        untested = getattr(self, "untested", [])
        if not self.ids:
            return
        tw.section("requirement traceability")
        n = len(self.catalogue.requirements)
        impl = [r for r in untested if r.status == "implemented"]
        tw.line(f"{n} requirements in {Path(self.catalogue.path).name}; "
                f"{n - len(untested)} with tests; {len(untested)} without "
                f"({len(impl)} implemented, {len(untested) - len(impl)} planned)"
                + ("" if self.enforced else "; coverage not enforced (partial run)"))
        if self.enforced:
            for r in impl:
                tw.line(f"  no test: {r.id} ({r.risk} risk, implemented)")
        for problem in self.gate:
            tw.line(f"TRACEABILITY FAILED: {problem}", red=True, bold=True)
