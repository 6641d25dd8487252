"""The requirements catalogue (docs/requirements.yaml) and traceability: which tests verify
which requirement, and each requirement's OQ verdict.

Used by the pytest plugin (tests/traceability.py), which collects the requirement IDs each
test names and writes the per-test results JSON (``RESULTS_FORMAT``), and by the validation
pack (workflow.validation.report), which turns that JSON, the catalogue and the installation
facts (workflow.validation.iq) into the IQ/OQ report. Everything is sorted so that the same
commit, environment and results give the same report (apart from run times).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workflow.config import REPO_ROOT

DEFAULT_CATALOGUE = REPO_ROOT / "docs" / "requirements.yaml"
RESULTS_FORMAT = "qms-trace-results/1"

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
