"""Declared document KPIs (controlled_document.yaml and document_review.yaml ``kpis:``) on known
data: one SOP approved on 2 Mar 2026 (T0), effective on 22 Mar, 12-month review; its periodic
review opened on 22 Mar 2027 (due 30 days later) is still open on 1 May 2027; another SOP's
version 1 is a draft: one document in force, one version in work, one document past its
periodic review."""

from __future__ import annotations

from datetime import datetime

from tests.integration import test_controlled_documents as base
from tests.integration.test_controlled_documents import approve, new_version, to_approval, upload
from workflow import clock
from workflow.kpi import Kpi, Period

crew = base.crew  # the fixtures, shared
store = base.store


def at(moment: str) -> None:
    clock.set(datetime.fromisoformat(moment + "+00:00"))


def test_document_kpis_known_answers(engine, crew, store):
    """R-DOC-16: documents in force, versions in work, periodic reviews
    open and overdue (documents past their periodic review), with the drill-down."""
    n = new_version(engine, crew, review_interval_months=12)
    to_approval(engine, crew, n, upload(engine, crew["author"]))
    approve(engine, crew, n, "2026-03-22")
    new_version(engine, crew, number="SOP-QA-002")  # a draft: in work
    at("2026-03-22T00:01:00")
    engine.run_due_timers()
    at("2027-03-22T00:01:00")
    engine.run_due_timers()
    at("2027-05-01T12:00:00")
    with engine.reader() as s:
        k = Kpi(s, engine.registry, crew["qa"], Period.months("2026-03", "2027-05"))
        m = k.metrics(["controlled_document.in_force", "controlled_document.approved_waiting",
                       "document_review.open", "document_review.overdue"])
        assert m["controlled_document.in_force"].value == 1
        assert m["controlled_document.approved_waiting"].value == 1
        assert m["document_review.open"].value == 1
        od = m["document_review.overdue"]
        assert (od.value, od.numerator, od.denominator) == (1, 1, 1)
        [review] = k.drill("document_review.overdue", "num")
        assert review.number.startswith("DRV-") and review.title.endswith("version 1")
