"""Demo data of security operations (issue 20): the computerised-system inventory of a small
GxP site (this QMS, a LIMS, an ERP, a chromatography data system, a document management system,
a building management system), this QMS's component list, and vulnerabilities in every
outcome: open, patched through a change request, risk accepted, acceptance expired and
reopened, not applicable. Everything goes through the engine, as people would do it; the
acceptance that expired was given 100 days ago (the clock is moved back for it, then the
timer reopens it as the scheduler would)."""

from __future__ import annotations

import json
from datetime import timedelta
from importlib import metadata

from workflow import clock, sbom
from workflow.engine.core import Engine
from workflow.errors import WorkflowError
from workflow.signatures.mac import VouchedSignature

#: name, description, overrides of the common entry values
SYSTEMS: list[tuple[str, str, dict[str, object]]] = [
    ("LabWare LIMS", "Samples, specifications and QC results; certificate of analysis.",
     {"supplier": "LabWare Inc.", "hosting": "on_premise", "validation_document": "VR-LIMS-004",
      "next_periodic_review": -20}),  # overdue
    ("SAP S/4HANA ERP", "Materials, batch management and release status, purchasing.",
     {"supplier": "SAP SE", "hosting": "saas", "part11_applicable": False,
      "validation_document": "VR-ERP-011"}),
    ("Empower 3 CDS", "Chromatography data acquisition and processing for QC release testing.",
     {"supplier": "Waters Corporation", "gamp_category": "cat4_configured",
      "validation_document": "VR-CDS-007"}),
    ("Veeva Vault QualityDocs", "Controlled documents of the site outside this QMS (legacy SOPs).",
     {"supplier": "Veeva Systems", "hosting": "saas", "validation_document": "VR-DMS-002"}),
    ("Desigo CC BMS", "Building management: HVAC, cleanroom pressure cascades, alarms.",
     {"supplier": "Siemens", "part11_applicable": False, "validation_status": "in_validation",
      "data_classification": "internal"}),
]

COMMON: dict[str, object] = {
    "gxp_relevant": True, "part11_applicable": True, "annex11_applicable": True,
    "gamp_category": "cat4_configured", "system_owner": "sam", "process_owner": "paul",
    "hosting": "on_premise", "data_classification": "confidential",
    "validation_status": "validated", "next_periodic_review": 200,
}

#: the QMS's direct runtime dependencies whose versions the demo records as its SBOM
COMPONENTS = ["Flask", "SQLAlchemy", "alembic", "transitions", "APScheduler", "Jinja2",
              "simpleeval", "cryptography", "PyYAML", "jsonschema", "reportlab", "pyotp"]


def _sig(username: str) -> VouchedSignature:
    return VouchedSignature(username, method="demo-seed")


def _day(offset: int) -> str:
    return (clock.now() + timedelta(days=offset)).date().isoformat()


def _entry(values: dict[str, object]) -> dict[str, object]:
    out = dict(values)
    out["next_periodic_review"] = _day(int(str(out["next_periodic_review"])))
    return out


def inventory(e: Engine) -> list[str]:
    """This QMS's entry (registered by `qms init`) completed and approved, five more systems,
    a periodic review, and this QMS's component list."""
    out = []
    try:  # registered by `qms init`
        number = sbom.this_system_entry(e)
    except WorkflowError:
        number = e.start("system_inventory", "sam", {"title": e.system_name}).number
    e.fire(number, "submit", "sam", _entry({
        **COMMON, "description": "This QMS: deviations, CAPA, change control, training, "
        "access reviews, inventory and vulnerabilities.",
        "supplier": "Open-source project (qms-workflow), operated in-house",
        "hosting": "private_cloud", "validation_status": "in_validation"}))
    e.fire(number, "approve", "quinn", {"approval_comments": "IQ/OQ report pending."},
           signature=_sig("quinn"))
    out.append(number)
    for name, description, over in SYSTEMS:
        r = e.start("system_inventory", "sam", {"title": name})
        e.fire(r.number, "submit", "sam", _entry({**COMMON, "description": description, **over}))
        e.fire(r.number, "approve", "quinn", signature=_sig("quinn"))
        out.append(r.number)
    lims = out[1]
    e.fire(lims, "record_periodic_review", "sam", {
        "last_periodic_review": _day(-30), "next_periodic_review": _day(-20 + 365),
        "periodic_review_notes": "Validated state maintained; two minor changes since the "
        "last review, both verified."}, signature=_sig("sam"),
        reason="Periodic review done: next review a year after the due date")
    comps = []
    for dist in COMPONENTS:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        comps.append({"type": "library", "name": dist, "version": version,
                      "purl": f"pkg:pypi/{dist.lower()}@{version}"})
    doc = {"bomFormat": "CycloneDX", "specVersion": "1.6",
           "metadata": {"tools": {"components": [{"name": "qms demo data"}]}},
           "components": comps}
    sbom.import_sbom(e, json.dumps(doc).encode(), actor="ivy", reason="demo: release installed",
                     entry=number)
    return out


def vulnerabilities(e: Engine, systems: list[str]) -> list[str]:
    """One vulnerability in each outcome."""
    qms, lims, erp, cds, dms, bms = systems
    jinja = next((c for c in (e.get(qms).data.get("components") or [])
                  if c["name"] == "Jinja2"), {"version": "3.1"})
    out = []
    # open, in assessment
    r = e.start("vulnerability", "ivy", {
        "title": "Jinja2 sandbox breakout through indirect format call",
        "advisory_id": "CVE-2024-56326", "system": qms,
        "component": f"Jinja2 {jinja['version']}", "fixed_version": "3.1.5", "severity": "high",
        "cvss_score": "7.8", "reported_on": _day(-3)})
    out.append(r.number)
    # patched through a change request
    r = e.start("vulnerability", "ivy", {
        "title": "Windows SMB client remote code execution on the CDS acquisition servers",
        "advisory_id": "CVE-2025-33073", "system": cds, "component": "Windows Server 2019",
        "severity": "critical", "cvss_score": "8.8", "reported_on": _day(-6)})
    res = e.fire(r.number, "decide_patch", "ivy", {
        "applicable": True, "assessment": "Acquisition servers reach file shares over SMB.",
        "gxp_system": True, "validated_state_risk": "low", "change_owner": "olga"})
    cr = res.created[0]
    e.fire(cr, "submit", "olga")
    e.fire(cr, "submit_for_approval", "olga", {
        "classification": "minor", "quality_impact": "None: operating-system security update; "
        "no CDS function changed.", "regulatory_impact": "none",
        "validation_impact": "verification", "training_impact": "none",
        "implementation_plan": "Patch node 1, run the system suitability test, then node 2."})
    e.fire(cr, "approve", "quinn", signature=_sig("quinn"))
    e.fire(cr, "approve", "paul", signature=_sig("paul"))
    e.fire(cr, "complete_implementation_no_training", "olga",
           {"implementation_summary": "KB update installed on both nodes; SST passed."})
    e.fire(cr, "verify", "quentin", {"verification_evidence": "SST report and patch log."},
           signature=_sig("quentin"))
    e.fire(r.number, "confirm_patched", "sam", {
        "patch_summary": "Patched under " + cr + "; system suitability passed.",
        "patched_on": _day(0)}, signature=_sig("sam"))
    out += [r.number, cr]
    # risk accepted until an expiry date (not GxP-critical: system owner and ISMS)
    r = e.start("vulnerability", "ivy", {
        "title": "Stored XSS in a Fiori launchpad tile", "advisory_id": "SAP-3577131",
        "system": erp, "severity": "medium", "cvss_score": "5.4", "reported_on": _day(-10)})
    accept = {"applicable": True, "assessment": "Only authenticated key users can create "
              "tiles; the vendor fix arrives with the next quarterly release.",
              "gxp_system": True, "validated_state_risk": "none",
              "acceptance_rationale": "Exploitation needs a key-user account; fix scheduled.",
              "compensating_controls": "Key-user role limited to 4 people; CSP header enabled.",
              "acceptance_expiry": _day(60)}
    e.fire(r.number, "accept_risk", "sam", accept, signature=_sig("sam"))
    e.fire(r.number, "accept_risk", "ivy", signature=_sig("ivy"))
    out.append(r.number)
    # not applicable
    r = e.start("vulnerability", "ivy", {
        "title": "SAML signature wrapping in the SSO connector", "advisory_id": "GHSA-demo-0001",
        "system": dms, "severity": "high", "reported_on": _day(-2)})
    e.fire(r.number, "not_applicable", "ivy", {
        "applicable": False, "assessment": "The site uses the OIDC connector; SAML is disabled."},
        signature=_sig("ivy"))
    out.append(r.number)
    # an acceptance given 100 days ago that expired 10 days ago: the timer reopened it
    clock.advance(timedelta(days=-100))  # works on a frozen (tests) and a running clock
    try:
        r = e.start("vulnerability", "ivy", {
            "title": "Default service credentials in the BMS web client",
            "advisory_id": "SSA-demo-0002", "system": bms, "severity": "low",
            "reported_on": _day(0)})
        e.fire(r.number, "accept_risk", "sam", {
            **accept, "assessment": "BMS network is isolated; credentials rotated by Siemens "
            "service at the next visit.", "acceptance_expiry": _day(90),
            "acceptance_rationale": "Isolated network; vendor visit planned."},
            signature=_sig("sam"))
        e.fire(r.number, "accept_risk", "ivy", signature=_sig("ivy"))
    finally:
        clock.advance(timedelta(days=100))
    e.run_due_timers()  # as the scheduler's timers job: the expired acceptance reopens
    out.append(r.number)
    return out


def seed(e: Engine) -> list[str]:
    systems = inventory(e)
    return systems + vulnerabilities(e, systems)
