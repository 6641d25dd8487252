"""What each KPI is: its spec (label, kind, how it is shown; docs/kpis.md defines each one)
and its green / amber thresholds (defaults, overridable by a YAML file).

The cohort behind each metric is in :mod:`workflow.kpi.cohorts`, keyed like :data:`SPECS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workflow import config

DONE, VOID = "done", "void"
#: audit actions of the system chain that the security metrics count (written by identity/)
SECURITY_ACTIONS = {"sec.failed_logins": "login_failed", "sec.lockouts": "account_locked",
                    "sec.signature_failures": "signature_failed"}
#: who may open the KPI dashboard and the KPI API
VIEW_ROLES = ("qa", "admin", "isms", "process_owner")
#: who may see the system-wide metrics (security events, user accounts): record-based metrics
#: count only what the viewer may see, these count everything
SYSTEM_METRIC_ROLES = ("qa", "admin", "isms")
#: system metrics whose cohort is user accounts (rid = users.id), not records or events
USER_METRICS = ("ar.uncovered", "sec.totp_enrolled")


# --------------------------------------------------------------------------- thresholds

#: green / amber limits; ``better`` says which way is good. Override any of them with a YAML
#: file named by QMS_KPI_THRESHOLDS (same shape). Ratios are fractions (0.9 = 90 %).
DEFAULT_THRESHOLDS: dict[str, dict[str, Any]] = {
    "capa.overdue": {"better": "lower", "green": 0.05, "amber": 0.15},
    "capa.age": {"better": "lower", "green": 45, "amber": 90},
    "capa.closure_days": {"better": "lower", "green": 60, "amber": 90},
    "capa.on_time": {"better": "higher", "green": 0.90, "amber": 0.75},
    "capa.on_time_original": {"better": "higher", "green": 0.90, "amber": 0.75},
    "capa.extended": {"better": "lower", "green": 0.10, "amber": 0.25},
    "dev.triage_days": {"better": "lower", "green": 2, "amber": 5},
    "dev.closure_days": {"better": "lower", "green": 30, "amber": 45},
    "cr.cycle_days": {"better": "lower", "green": 60, "amber": 90},
    "cr.approval_days": {"better": "lower", "green": 7, "amber": 14},
    "cr.void_share": {"better": "lower", "green": 0.10, "amber": 0.20},
    "capa.effectiveness": {"better": "higher", "green": 0.90, "amber": 0.75},
    "capa.effectiveness_early": {"better": "lower", "green": 0, "amber": 0.10},
    "capa.days_late": {"better": "lower", "green": 0, "amber": 14},
    "capa.days_late_original": {"better": "lower", "green": 0, "amber": 30},
    "trn.compliance": {"better": "higher", "green": 0.95, "amber": 0.85},
    "trn.overdue": {"better": "lower", "green": 0, "amber": 5},
    "ar.on_time": {"better": "higher", "green": 0.95, "amber": 0.80},
    "ar.uncovered": {"better": "lower", "green": 0, "amber": 0.05},
    "sec.failed_logins": {"better": "lower", "green": 20, "amber": 100},
    "sec.totp_enrolled": {"better": "higher", "green": 1.0, "amber": 0.9},
    "sec.lockouts": {"better": "lower", "green": 0, "amber": 3},
    "sec.signature_failures": {"better": "lower", "green": 2, "amber": 10},
}


def load_thresholds(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The defaults, overridden by the YAML file ``path`` (or QMS_KPI_THRESHOLDS)."""
    out = {k: dict(v) for k, v in DEFAULT_THRESHOLDS.items()}
    path = path or config.settings().kpi_thresholds
    if path:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a mapping of metric -> thresholds")
        for key, spec in doc.items():
            if not isinstance(spec, dict) or spec.get("better", "lower") not in ("lower", "higher"):
                raise ValueError(f"{path}: {key}: needs better: lower|higher, green:, amber:")
            out[key] = {**out.get(key, {"better": "lower"}), **spec}
    return out


def rate(value: float | None, spec: dict[str, Any] | None) -> str | None:
    """'green' | 'amber' | 'red' (None without a value or threshold)."""
    if value is None or not spec:
        return None
    if spec.get("better", "lower") == "higher":
        return "green" if value >= spec["green"] else "amber" if value >= spec["amber"] else "red"
    return "green" if value <= spec["green"] else "amber" if value <= spec["amber"] else "red"


# --------------------------------------------------------------------------- metric specs


@dataclass(frozen=True)
class Spec:
    key: str
    workflow: str | None  # None: system (security) metrics
    label: str
    kind: str  # count | share | median | mean | sum
    show: str  # count | percent | days
    help: str
    num_label: str = ""
    den_label: str = ""


SPECS: dict[str, Spec] = {s.key: s for s in [
    Spec("capa.open", "capa", "Open CAPAs", "count", "count",
         "CAPAs created and not in a final state at the as-of time."),
    Spec("capa.overdue", "capa", "Overdue CAPAs", "share", "count",
         "Open CAPAs whose current due date has passed.", "overdue", "open"),
    Spec("capa.age", "capa", "Average age of open CAPAs", "mean", "days",
         "Mean days from creation to the as-of time, over open CAPAs.", "", "open"),
    Spec("capa.closure_days", "capa", "Median days to closure", "median", "days",
         "CAPAs closed (outcome done) in the period: closed − created.", "", "closed"),
    Spec("capa.on_time", "capa", "On-time closure (current due)", "share", "percent",
         "CAPAs due in the period (current due) closed on or before it.", "on time", "due"),
    Spec("capa.on_time_original", "capa", "On-time closure (original due)", "share", "percent",
         "CAPAs whose original due date falls in the period, closed on or before it.",
         "on time", "due"),
    Spec("capa.extended", "capa", "CAPAs extended", "share", "percent",
         "CAPAs closed in the period with at least one approved due-date extension.",
         "extended", "closed"),
    Spec("capa.effectiveness", "capa", "Effectiveness checks passed", "share", "percent",
         "Checks decided in the period (leaving the 'effectiveness' milestone's start state, "
         "not into a final state) that went on to its stop state.", "passed", "checks"),
    Spec("capa.effectiveness_early", "capa", "Effectiveness checks taken early", "share",
         "percent", "Checks decided in the period (as for 'Effectiveness checks passed') that "
         "were taken before the step opened (its not_before), with a reason.", "early",
         "checks"),
    Spec("capa.days_late", "capa", "Days late at closure (current due)", "mean", "days",
         "CAPAs closed in the period after their current due date: mean days late.",
         "late", "closed"),
    Spec("capa.days_late_original", "capa", "Days late at closure (original due)", "mean",
         "days", "CAPAs closed in the period after their original due date: mean days late.",
         "late", "closed"),
    Spec("capa.recurrence", "capa", "Recurrence after closure", "share", "percent",
         "CAPAs raised by a deviation and closed (outcome done) in the period, for which a "
         "later deviation was recorded as a recurrence of that deviation (by the as-of time).",
         "recurred", "closed"),
    Spec("dev.created", "deviation", "Deviations reported", "count", "count",
         "Deviations created in the period (by classification and month in the chart)."),
    Spec("dev.triage_days", "deviation", "Median days to triage", "median", "days",
         "Milestone 'triage' completed in the period: entering its stop state − its start.",
         "", "triaged"),
    Spec("dev.closure_days", "deviation", "Median days to closure", "median", "days",
         "Deviations closed (outcome done) in the period: closed − created.", "", "closed"),
    Spec("dev.capa_share", "deviation", "Deviations that raised a CAPA", "share", "percent",
         "Deviations closed in the period that a CAPA is linked to by spawned_by.",
         "with CAPA", "closed"),
    Spec("cr.cycle_days", "change_request", "Median change cycle time", "median", "days",
         "Milestone 'cycle' completed in the period.", "", "closed"),
    Spec("cr.approval_days", "change_request", "Median time to approval", "median", "days",
         "Milestone 'approval' completed in the period.", "", "approved"),
    Spec("cr.void_share", "change_request", "Rejected or withdrawn", "share", "percent",
         "Change requests that reached a final state in the period with outcome void.",
         "void", "finished"),
    Spec("trn.compliance", "training_assignment", "Training compliance", "share", "percent",
         "Assignments due by the as-of time (not cancelled, trainee active) that are completed.",
         "completed", "due"),
    Spec("trn.days_to_complete", "training_assignment", "Median days to complete training",
         "median", "days", "Assignments completed (outcome done) in the period: completed − "
         "assigned.", "", "completed"),
    Spec("trn.overdue", "training_assignment", "Overdue training", "count", "count",
         "Open assignments past their due date at the as-of time."),
    Spec("ar.on_time", "access_review", "Access reviews on time", "share", "percent",
         "Reviews due in the period (current due) closed on or before it.", "on time", "due"),
    Spec("ar.revoked", "access_review", "Grants revoked", "sum", "count",
         "Grants marked revoke in access reviews closed in the period.", "", "reviews"),
    Spec("ar.uncovered", None, "Active users not covered by a review", "share", "count",
         "Active users holding a role at the as-of time whom no access review created in the "
         "period (not void) lists in its grants.", "not covered", "active users"),
    Spec("sec.totp_enrolled", None, "Authenticator enrolment", "share", "percent",
         "Active users whose roles require a second factor (policy) who have enrolled one.",
         "enrolled", "required"),
    Spec("sec.failed_logins", None, "Failed logins", "count", "count",
         "login_failed events of the system audit chain in the period."),
    Spec("sec.lockouts", None, "Account lockouts", "count", "count",
         "account_locked events of the system audit chain in the period."),
    Spec("sec.signature_failures", None, "Failed signatures", "count", "count",
         "signature_failed events of the system audit chain in the period."),
]}
