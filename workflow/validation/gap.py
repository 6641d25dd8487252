"""Gap-analysis template: a gap_analysis record started with one row per requirement of the
chosen frameworks, taken from the requirements catalogue (docs/requirements.yaml: id, text,
clause). ``qms gap-analysis start`` and the risk register page call :func:`start`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workflow.engine.context import Result
from workflow.engine.core import Engine
from workflow.errors import ValidationFailed
from workflow.validation.catalogue import Requirement, load_catalogue

#: framework -> (label, requirement ID prefixes, clause words): a requirement belongs to a
#: framework when its ID starts with a prefix or its clause names the regulation
FRAMEWORKS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "part11": ("21 CFR Part 11", ("R-P11-",), ("21 CFR 11", "CFR Part 11")),
    "annex11": ("EU GMP Annex 11", ("R-A11-", "R-A11D-"), ("Annex 11",)),
    "iso27001": ("ISO/IEC 27001", ("R-ISO-",), ("27001",)),
}
WORKFLOW = "gap_analysis"


def _belongs(r: Requirement, framework: str) -> bool:
    _, prefixes, words = FRAMEWORKS[framework]
    return r.id.startswith(prefixes) or any(w in r.clause for w in words)


def template_rows(frameworks: Iterable[str], catalogue: str | Path | None = None
                  ) -> list[dict[str, Any]]:
    """One row (ref, clause, text) per catalogue requirement of ``frameworks``, in catalogue
    order, each once."""
    chosen = list(dict.fromkeys(frameworks))
    unknown = [f for f in chosen if f not in FRAMEWORKS]
    if unknown or not chosen:
        raise ValidationFailed({"frameworks": f"choose from {', '.join(FRAMEWORKS)}"
                                              + (f" (not {', '.join(unknown)})" if unknown else "")})
    cat = load_catalogue(catalogue)
    return [{"ref": r.id, "clause": r.clause[:300], "text": r.text[:1000]}
            for r in cat.sorted() if any(_belongs(r, f) for f in chosen)]


def start(engine: Engine, actor: str, title: str, frameworks: Iterable[str], *,
          scope: str = "", catalogue: str | Path | None = None) -> Result:
    """Start a gap analysis as ``actor`` with the template's rows (the engine checks the
    start roles and the values, in one unit)."""
    chosen = list(dict.fromkeys(frameworks))
    rows = template_rows(chosen, catalogue)
    data: dict[str, Any] = {"title": title, "requirements": rows,
                            "frameworks": ", ".join(FRAMEWORKS[f][0] for f in chosen)}
    if scope:
        data["scope"] = scope
    return engine.start(WORKFLOW, actor, data)
