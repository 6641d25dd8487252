"""Validation pack: the requirements catalogue, traceability from tests, IQ evidence and the
OQ matrix behind ``qms validation-report`` (rendering in ``workflow.validation_render``).

Used by the pytest plugin (tests/traceability.py), which collects the requirement IDs each
test names and writes the per-test results JSON, and by the CLI, which turns that JSON, the
catalogue and the installation facts into the IQ/OQ report. Everything is sorted so that the
same commit, environment and results give the same report (apart from run times).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from workflow.db.engines import REPO_ROOT

log = logging.getLogger(__name__)

DEFAULT_CATALOGUE = REPO_ROOT / "docs" / "requirements.yaml"
RESULTS_FORMAT = "qms-trace-results/1"
REPORT_FORMAT = "qms-validation-report/1"

#: a requirement ID such as R-P11-10e-3, R-A11D-1 or R-WF-2; not the tail of a record number
#: such as CR-2026-0001 (the look-behind refuses a letter, digit or hyphen before the R)
ID_RE = re.compile(r"(?<![A-Za-z0-9-])R-[A-Z0-9]+(?:-[A-Za-z0-9]+)+")
RISKS = ("high", "medium", "low")
STATUSES = ("implemented", "planned")
_KEYS = {"id", "text", "clause", "risk", "status", "issue", "note", "same_as", "verified_by"}


class CatalogueError(Exception):
    """The requirements catalogue is malformed; ``problems`` lists every problem."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


# ------------------------------------------------------------------ catalogue


@dataclass(frozen=True)
class Requirement:
    id: str
    text: str
    clause: str
    risk: str
    status: str
    issue: int | None = None
    note: str = ""
    same_as: tuple[str, ...] = ()
    verified_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalogue:
    path: str
    sha256: str
    requirements: Mapping[str, Requirement]

    def __contains__(self, rid: object) -> bool:
        return rid in self.requirements

    def sorted(self) -> list[Requirement]:
        return [self.requirements[k] for k in sorted(self.requirements, key=id_sort_key)]


def id_sort_key(rid: str) -> tuple[Any, ...]:
    """Natural order: R-P11-10a-2 before R-P11-10a-10, R-P11-10e-1 before R-P11-100a-1."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", rid))


def ids_in(text: str | None) -> list[str]:
    """The requirement IDs named in ``text`` (e.g. a docstring), unique, in natural order."""
    return sorted(set(ID_RE.findall(text or "")), key=id_sort_key)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load and check docs/requirements.yaml; raise CatalogueError naming every problem."""
    path = Path(path or DEFAULT_CATALOGUE)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogueError(path, [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise CatalogueError(path, [f"not valid YAML: {exc}"]) from None
    items = doc.get("requirements") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise CatalogueError(path, ["expected a mapping with a `requirements:` list"])
    problems: list[str] = []
    reqs: dict[str, Requirement] = {}
    for n, item in enumerate(items, 1):
        where = f"requirement #{n}"
        if not isinstance(item, dict):
            problems.append(f"{where}: not a mapping")
            continue
        rid = item.get("id")
        if isinstance(rid, str):
            where = rid
        if not isinstance(rid, str) or ID_RE.fullmatch(rid) is None:
            problems.append(f"{where}: `id` must look like R-XXX-N (got {rid!r})")
            continue
        if rid in reqs:
            problems.append(f"{rid}: duplicate id")
        unknown = sorted(set(item) - _KEYS)
        if unknown:
            problems.append(f"{rid}: unknown keys {', '.join(unknown)}")
        for key in ("text", "clause"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                problems.append(f"{rid}: `{key}` is required")
        if item.get("risk") not in RISKS:
            problems.append(f"{rid}: `risk` must be one of {', '.join(RISKS)}")
        if item.get("status") not in STATUSES:
            problems.append(f"{rid}: `status` must be one of {', '.join(STATUSES)}")
        issue = item.get("issue")
        if issue is not None and (not isinstance(issue, int) or isinstance(issue, bool)):
            problems.append(f"{rid}: `issue` must be an issue number or null")
        if item.get("status") == "planned" and "issue" not in item:
            problems.append(f"{rid}: a planned requirement names the issue that brings it "
                            f"(`issue: N`, or `issue: null` when there is none yet)")
        lists = {}
        for key in ("same_as", "verified_by"):
            value = item.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"{rid}: `{key}` must be a list of strings")
                value = []
            lists[key] = tuple(value)
        reqs[rid] = Requirement(
            id=rid, text=str(item.get("text", "")).strip(), clause=str(item.get("clause", "")),
            risk=str(item.get("risk")), status=str(item.get("status")), issue=issue,
            note=str(item.get("note") or "").strip(), **lists)
    for r in reqs.values():
        for target in r.same_as:
            if target not in reqs:
                problems.append(f"{r.id}: same_as names unknown requirement {target}")
    if problems:
        raise CatalogueError(path, problems)
    return Catalogue(path=str(path), sha256=hashlib.sha256(raw).hexdigest(), requirements=reqs)


# ------------------------------------------------------------------ traceability


def _base(nodeid: str) -> str:
    """The node id without its parameters: ``a.py::test_x[1-2]`` -> ``a.py::test_x``."""
    return nodeid.split("[", 1)[0]


@dataclass
class Trace:
    """Requirement -> the tests that verify it, and what the catalogue claims that no test shows."""

    tests: dict[str, list[str]]  # requirement id -> sorted node ids
    via_catalogue: dict[str, list[str]]  # requirement id -> node ids linked by verified_by
    stale_patterns: list[str] = field(default_factory=list)  # "R-X: pattern" matching nothing

    def untested(self, catalogue: Catalogue) -> list[Requirement]:
        return [r for r in catalogue.sorted() if not self.tests.get(r.id)]

    def gate_failures(self, catalogue: Catalogue) -> list[str]:
        """Problems that fail a whole-suite run: implemented high-risk requirements without a
        test, and verified_by patterns that match no test (a renamed or removed test)."""
        out = [f"{r.id} ({r.risk} risk, implemented) has no test"
               for r in self.untested(catalogue) if r.status == "implemented" and r.risk == "high"]
        out += [f"docs/requirements.yaml: {p} matches no test" for p in self.stale_patterns]
        return out


def trace(catalogue: Catalogue, tests: Mapping[str, Iterable[str]]) -> Trace:
    """Link requirements to tests: the IDs each test names, plus the catalogue's
    ``verified_by`` patterns, plus ``same_as`` (verified by the tests of the named IDs)."""
    direct: dict[str, set[str]] = {rid: set() for rid in catalogue.requirements}
    for nodeid, ids in tests.items():
        for rid in ids:
            if rid in direct:
                direct[rid].add(nodeid)
    via: dict[str, set[str]] = {}
    stale: list[str] = []
    for r in catalogue.sorted():
        for pattern in r.verified_by:
            hits = {n for n in tests if fnmatch.fnmatchcase(_base(n), pattern)}
            if not hits:
                stale.append(f"{r.id}: verified_by {pattern!r}")
            via.setdefault(r.id, set()).update(hits)
    linked = {rid: direct[rid] | via.get(rid, set()) for rid in direct}
    for r in catalogue.requirements.values():
        for target in r.same_as:
            linked[r.id] |= direct[target] | via.get(target, set())
    return Trace(tests={k: sorted(v) for k, v in linked.items()},
                 via_catalogue={k: sorted(v) for k, v in via.items() if v},
                 stale_patterns=stale)


def verdict(outcomes: list[str]) -> str:
    """A requirement's OQ verdict from its tests' outcomes."""
    if not outcomes:
        return "no test"
    if any(o in ("failed", "error", "xpassed") for o in outcomes):
        return "FAIL"
    if any(o == "not run" for o in outcomes):
        return "incomplete"
    if all(o in ("skipped", "xfailed") for o in outcomes):
        return "not run"
    return "pass"


# ------------------------------------------------------------------ IQ evidence


SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN", "PASSWD", "CREDENTIAL")


def mask(name: str, value: str) -> str:
    """A configuration value as shown in the report: secrets never, URLs without password."""
    if any(w in name.upper() for w in SECRET_WORDS) and not name.upper().endswith("_FILE"):
        return "(set, masked)" if value else "(empty)"
    if "://" in value:
        try:
            from sqlalchemy.engine import make_url

            return make_url(value).render_as_string(hide_password=True)
        except Exception:  # not an SQLAlchemy URL: mask anything between :// and @
            return re.sub(r"//[^/@]*@", "//***@", value)
    return value


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(65536), b""):
            h.update(block)
    return h.hexdigest()


def _checksums(root: Path, patterns: Iterable[str]) -> list[dict[str, str]]:
    files = sorted({p for pat in patterns for p in root.glob(pat) if p.is_file()})
    return [{"file": p.relative_to(REPO_ROOT).as_posix() if p.is_relative_to(REPO_ROOT)
             else p.name, "sha256": sha256_file(p)} for p in files]


def git_commit(root: Path = REPO_ROOT) -> dict[str, Any]:
    """HEAD and whether the work tree differs from it (a dirty tree is not a release)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, timeout=10,
                                check=True).stdout
        return {"commit": head, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown (not a git checkout)", "dirty": None}


def installed_packages() -> list[dict[str, str]]:
    """Every installed distribution and its version (importlib.metadata), sorted by name."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        seen.setdefault(key, dist.version)
    return [{"name": k, "version": seen[k]} for k in sorted(seen)]


def product_version() -> str:
    try:
        return metadata.version("qms-workflow")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def configuration() -> list[dict[str, str]]:
    """The configuration in force: the effective security policy (defaults included) and
    every QMS_ environment variable that is set, secrets masked."""
    from workflow.identity.policy import Policy

    rows: dict[str, dict[str, str]] = {}
    try:
        policy = Policy.from_env()
        for k, v in sorted(vars(policy).items()):
            rows[f"policy.{k}"] = {"name": f"policy.{k}",
                                   "value": ",".join(v) if isinstance(v, tuple) else str(v),
                                   "source": "effective"}
    except SystemExit as exc:  # a malformed QMS_ variable: show it, do not stop the report
        rows["policy"] = {"name": "policy", "value": f"invalid: {exc}", "source": "effective"}
    env = {k: v for k, v in os.environ.items() if k.startswith("QMS_")}
    if "QMS_DATABASE_URL" not in env:
        rows["QMS_DATABASE_URL"] = {"name": "QMS_DATABASE_URL", "source": "default",
                                    "value": "sqlite:///<QMS_INSTANCE_DIR>/qms.db"}
    if "QMS_SIGNATURE_KEY" not in env:
        rows["QMS_SIGNATURE_KEY"] = {"name": "QMS_SIGNATURE_KEY", "source": "default",
                                     "value": "(not set: key file QMS_SIGNATURE_KEY_FILE)"}
    for k in sorted(env):
        rows[k] = {"name": k, "value": mask(k, env[k]), "source": "environment"}
    return [rows[k] for k in sorted(rows)]


def database_facts(url: str | None = None) -> dict[str, Any]:
    """Engine, server version and schema revision (Alembic head of the code vs the database)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from workflow.db import engines as db

    facts: dict[str, Any] = {"alembic_head": db.head_revision()}
    url = url or db.default_database_url()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        # connecting would create an empty database file: report instead
        facts.update(url=parsed.render_as_string(hide_password=True), engine="sqlite",
                     server_version="SQLite (no database file)", current_revision=None,
                     error="the database file does not exist (run `qms init`)",
                     schema_status="database not reachable")
        return facts
    try:
        dbe = db.make_engine(url)
    except Exception as exc:
        facts.update(engine="unknown", error=f"{type(exc).__name__}: {exc}")
        return facts
    facts["url"] = dbe.url.render_as_string(hide_password=True)
    facts["engine"] = dbe.dialect.name
    try:
        with dbe.connect() as conn:
            if dbe.dialect.name == "sqlite":
                facts["server_version"] = "SQLite " + conn.execute(
                    text("select sqlite_version()")).scalar_one()
            else:
                facts["server_version"] = str(conn.execute(text("select version()")).scalar_one())
        facts["current_revision"] = db.current_revision(dbe)
    except Exception as exc:
        facts["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        facts.setdefault("current_revision", None)
    finally:
        dbe.dispose()
    cur, head = facts.get("current_revision"), facts["alembic_head"]
    facts["schema_status"] = ("database not reachable" if "error" in facts else
                              "not initialised" if cur is None else
                              "up to date" if cur == head else f"behind (code needs {head})")
    return facts


def gather_iq(database_url: str | None = None, catalogue: Catalogue | None = None
              ) -> dict[str, Any]:
    """Installation qualification evidence, every list sorted."""
    from workflow.spec.model import DEFAULT_DEFINITIONS_DIR, load_directory

    try:
        published = sorted((d.key, d.content_hash) for d in load_directory().values())
        defs = [{"key": k, "content_hash": h} for k, h in published]
    except Exception as exc:  # a broken shipped definition is IQ evidence too
        defs = [{"key": "(load failed)", "content_hash": f"{type(exc).__name__}: {exc}"}]
    iq: dict[str, Any] = {
        "product": {"name": "qms-workflow", "version": product_version(), **git_commit()},
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable,
                   "platform": platform.platform()},
        "packages": installed_packages(),
        "database": database_facts(database_url),
        "configuration": configuration(),
        "definition_files": _checksums(DEFAULT_DEFINITIONS_DIR, ["*.yaml", "*.json"]),
        "definition_hashes": defs,
        "migration_files": _checksums(REPO_ROOT / "migrations",
                                      ["versions/*.py", "env.py", "alembic.ini",
                                       "script.py.mako"]),
    }
    if catalogue is not None:
        iq["catalogue"] = {"file": _rel(catalogue.path), "sha256": catalogue.sha256}
    return iq


def _rel(path: str | Path) -> str:
    p = Path(path).resolve()
    return p.relative_to(REPO_ROOT).as_posix() if p.is_relative_to(REPO_ROOT) else p.name


# ------------------------------------------------------------------ OQ and the report model


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
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QMS_") or k == "QMS_TEST_DATABASE_URL"}
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    return proc.returncode, proc.stdout + proc.stderr
