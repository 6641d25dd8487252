"""Due-date extensions: anyone working on a record asks to move its current due date; QA
decides, approving with a signature or rejecting with a reason. Both the original and the
current due date stay on the record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from workflow.audit import trail as audit
from workflow.db import records
from workflow.db.models import (
    OPEN_TASK,
    DueDateExtension,
    ExtensionStatus,
    Record,
    Task,
    User,
)
from workflow.engine import access, signing
from workflow.engine.context import Ctx, Result, result_of
from workflow.errors import (
    DueDateLocked,
    NotAuthorized,
    ReasonRequired,
    RecordNotFound,
    SegregationOfDuties,
    SignatureRequired,
    StaleRecord,
    ValidationFailed,
    WorkflowError,
)


def check_request(new_due: datetime, reason: str) -> None:
    """What can be refused before any database work."""
    if new_due.tzinfo is None:
        raise ValidationFailed({"new_due": "needs a time zone"})
    if not (reason or "").strip():
        raise ReasonRequired("request a due-date extension")


def check_may_request(ctx: Ctx, rec: Record, user: User) -> None:
    """Who may ask to move a record's due date, and when (R-WF-16): the record is open, has
    a due date and no request waiting, and the person works on it (holds one of its
    workflow's roles, or initiated it). The record page offers "Request extension" only when
    this passes; the request itself checks it again."""
    if rec.closed_at is not None:
        raise DueDateLocked(f"{rec.number} is closed; its due date cannot change.")
    if rec.due_current is None:
        raise DueDateLocked(f"{rec.number} has no due date to extend.")
    pending = ctx.session.execute(
        select(func.count()).select_from(DueDateExtension).where(
            DueDateExtension.record_id == rec.id,
            DueDateExtension.status == ExtensionStatus.REQUESTED)
    ).scalar_one()
    if pending:
        raise DueDateLocked(f"{rec.number} already has an extension request waiting.")
    d = ctx.registry.by_hash(ctx.session, rec.definition_hash).definition
    roles = ctx.roles(user)
    if not (roles & (set(d.roles) | set(d.start_roles))) and user.id != rec.created_by_id:
        raise NotAuthorized("Only people working on this record may request an extension.")


def check_may_decide(ctx: Ctx, ext: DueDateExtension, rec: Record, user: User) -> None:
    """Who may decide a waiting request: a holder of the definition's extension roles who
    did not ask for it."""
    if ext.status != ExtensionStatus.REQUESTED:
        raise WorkflowError(f"Extension request #{ext.id} was already {ext.status}.")
    d = ctx.registry.by_hash(ctx.session, rec.definition_hash).definition
    if not ctx.roles(user) & set(d.extension_roles):
        raise NotAuthorized(
            f"Deciding a due-date extension needs one of: {', '.join(d.extension_roles)}.",
            required_roles=d.extension_roles)
    if user.id == ext.requested_by_id:
        raise SegregationOfDuties("You cannot decide your own extension request.",
                                  rule="not_requester")


def request(ctx: Ctx, record: int | str, user: User, new_due: datetime, reason: str,
            expected_version: int | None) -> int:
    """Record the request (the due date itself never changes here); returns its id."""
    session, now = ctx.session, ctx.now
    rec = records.lock(session, record)
    access.check_visible(ctx, rec, user, record)
    if expected_version is not None and rec.version != expected_version:
        raise StaleRecord(rec.number, expected_version, rec.version)
    check_may_request(ctx, rec, user)
    assert rec.due_current is not None  # checked above
    if new_due <= rec.due_current:
        raise ValidationFailed({"new_due": "must be later than the current due date "
                                           f"({rec.due_current:%Y-%m-%d})"})
    ext = DueDateExtension(record_id=rec.id, requested_by_id=user.id, requested_at=now,
                           old_due=rec.due_current, new_due=new_due, reason=reason,
                           status=ExtensionStatus.REQUESTED)
    session.add(ext)
    session.flush()
    rec.version += 1
    rec.updated_at = now
    audit.record_event(session, rec, at=now, actor=user, action="extension_requested",
                       changes={"due_current": [rec.due_current, new_due],
                                "extension_id": ext.id},
                       reason=reason)
    return ext.id


def decide(ctx: Ctx, extension_id: int, user: User, approve: bool, signature: Any,
           reason: str | None) -> Result:
    """Approve (signed) or reject (with a reason); open tasks whose due date followed the
    record's move with it."""
    session = ctx.session
    ext = session.get(DueDateExtension, extension_id)
    if ext is None:
        raise WorkflowError(f"There is no extension request #{extension_id}.")
    rec = records.lock(session, ext.record_id)
    try:
        access.check_visible(ctx, rec, user, rec.number)
    except RecordNotFound:
        raise WorkflowError(f"There is no extension request #{extension_id}.") from None
    session.refresh(ext)
    check_may_decide(ctx, ext, rec, user)
    if rec.closed_at is not None and approve:
        raise DueDateLocked(f"{rec.number} is closed; its due date can no longer move "
                            "(reject the request instead).")
    d = ctx.registry.by_hash(session, rec.definition_hash).definition
    ext.decided_by_id = user.id
    ext.decided_at = ctx.now
    ext.decision_reason = reason
    rec.version += 1
    rec.updated_at = ctx.now
    if not approve:
        if not (reason or "").strip():
            raise ReasonRequired("reject an extension request")
        ext.status = ExtensionStatus.REJECTED
        audit.record_event(session, rec, at=ctx.now, actor=user, action="extension_rejected",
                           changes={"extension_id": ext.id}, reason=reason)
        return result_of(rec, ctx, moved=False)
    if signature is None:
        raise SignatureRequired("approve extension", "Extension approved")
    sig_id, _ = signing.sign(ctx, rec, user, signature, transition="approve_extension",
                             meaning="Extension approved", roles=d.extension_roles,
                             data=rec.data)
    ext.status = ExtensionStatus.APPROVED
    ext.signature_id = sig_id
    old = rec.due_current
    rec.due_current = ext.new_due
    session.execute(
        update(Task.__table__)
        .where(Task.record_id == rec.id, OPEN_TASK, Task.due_at == old)
        .values(due_at=ext.new_due)
    )
    audit.record_event(session, rec, at=ctx.now, actor=user, action="due_date_extended",
                       changes={"due_current": [old, ext.new_due], "extension_id": ext.id},
                       reason=reason or ext.reason)
    return result_of(rec, ctx, moved=False, signature_id=sig_id)
