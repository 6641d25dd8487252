"""The shipped jobs, one module per job or family, and :func:`default_jobs`: the registry
that the CLI (and bootstrap) pass to the schedules loader and the runner. A schedule names a
job by its explicit name here."""

from __future__ import annotations

from notifications.job import dispatch_notifications
from workflow.scheduling.context import Job
from workflow.scheduling.jobs.access_review import access_review, check_access_review
from workflow.scheduling.jobs.audit_trail_review import audit_trail_review
from workflow.scheduling.jobs.checkpoint import audit_checkpoint, check_checkpoint
from workflow.scheduling.jobs.definition_review import check_definition_review, definition_review
from workflow.scheduling.jobs.kpi_report import check_kpi_report, kpi_report
from workflow.scheduling.jobs.periodic_record import check_periodic_record, periodic_record
from workflow.scheduling.jobs.record_due import check_record_date_due, record_date_due
from workflow.scheduling.jobs.reminders import (
    capa_effectiveness_due,
    check_password_expiry,
    check_sla,
    password_expiry_reminders,
    sla_sweep,
)
from workflow.scheduling.jobs.security_events import security_event_incidents
from workflow.scheduling.jobs.timers import run_timers
from workflow.scheduling.jobs.training import check_training, training_refreshers
from workflow.scheduling.jobs.verify_audit import verify_audit_daily, verify_audit_requests


def default_jobs() -> dict[str, Job]:
    """The jobs a schedule may name, by their explicit names (a new dict each call)."""
    jobs = [
        Job("access_review", access_review, check=check_access_review, per_record=True),
        Job("sla_sweep", sla_sweep, idempotent=True, check=check_sla),
        Job("run_timers", run_timers, idempotent=True),
        Job("capa_effectiveness_due", capa_effectiveness_due, idempotent=True),
        Job("training_refreshers", training_refreshers, idempotent=True, check=check_training),
        Job("dispatch_notifications", dispatch_notifications, idempotent=True),
        Job("audit_trail_review", audit_trail_review),
        Job("definition_review", definition_review, check=check_definition_review),
        Job("password_expiry_reminders", password_expiry_reminders, idempotent=True,
            check=check_password_expiry),
        Job("kpi_report", kpi_report, check=check_kpi_report),
        Job("record_date_due", record_date_due, check=check_record_date_due, per_record=True),
        Job("verify_audit_requests", verify_audit_requests, idempotent=True),
        Job("verify_audit_daily", verify_audit_daily),
        Job("audit_checkpoint", audit_checkpoint, check=check_checkpoint),
        Job("periodic_record", periodic_record, check=check_periodic_record),
        Job("security_event_incidents", security_event_incidents),
    ]
    return {job.name: job for job in jobs}
