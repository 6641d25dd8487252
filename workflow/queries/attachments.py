"""Uploading and downloading a record's attached files (issue 17, item 2): the commands the
web UI (and any other caller) uses, each audited on the system chain with the person.

* :func:`upload` checks the file (size, type from the content: workflow/blobs.py), stores it
  under its SHA-256 and records ``attachment_uploaded``; it returns the *file value* that the
  step's data then carries into the record (the step's own update event records it with the
  old and new value, like any field).
* :func:`download` hands out a file only to someone who may see the record (the one
  visibility rule; otherwise not found, as for a record that does not exist), only a file the
  record holds or held (its data or its audit trail), only when the stored bytes still
  match their SHA-256, and records ``attachment_downloaded``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import blobs, clock
from workflow.audit import trail as audit
from workflow.db.models import AuditEvent, Record
from workflow.engine.core import Engine
from workflow.errors import AttachmentDamaged, RecordNotFound
from workflow.identity import users as identity


def upload(engine: Engine, actor: str, name: str, data: bytes,
           field: str | None = None, number: str | None = None) -> dict[str, Any]:
    """Check and store ``data`` uploaded by ``actor`` as file ``name``; returns its file value.
    A refused file (AttachmentRefused) stores and records nothing. ``field`` and ``number``
    (when known) are recorded with the upload."""
    value = blobs.check(data, name)  # raises before anything is stored
    blobs.store().put(value["sha256"], data)
    with engine.unit() as session:
        user = identity.get_user(session, actor)
        audit.system_event(session, at=clock.now(), actor=user, action="attachment_uploaded",
                           changes={**value, "field": field, "number": number})
    return value


def held(session: Session, rec: Record) -> dict[str, dict[str, Any]]:
    """SHA-256 -> file value, for every file ``rec`` holds now or held before (its audit
    trail keeps the old values of replaced files)."""
    out: dict[str, dict[str, Any]] = {}
    changes = session.execute(select(AuditEvent.changes).where(
        AuditEvent.record_id == rec.id, AuditEvent.action.in_(("create", "update")))).scalars()
    for ch in changes:
        for pair in (ch or {}).values():
            for v in (pair if isinstance(pair, list) else []):
                for f in blobs.files_in(v):
                    out.setdefault(f["sha256"], f)
    for v in rec.data.values():
        for f in blobs.files_in(v):
            out[f["sha256"]] = f
    return out


def download(engine: Engine, number: str, sha256: str, actor: str
             ) -> tuple[dict[str, Any], bytes]:
    """The file value and bytes of file ``sha256`` of record ``number`` for ``actor``.

    Raises:
        RecordNotFound: no such record, ``actor`` may not see it, or it holds no such file.
        AttachmentDamaged: the stored file is missing or no longer matches its SHA-256.
    """
    with engine.unit() as session:
        user = identity.get_user(session, actor)
        rec = engine.get(number.strip().upper(), viewer=user, session=session)
        value = held(session, rec).get(sha256)
        if value is None:
            raise RecordNotFound(f"{rec.number} attachment {sha256[:12]}")
        # the bytes handed out are the bytes checked (read once)
        try:
            data = blobs.store().get(sha256)
            why = blobs.mismatch(data, sha256, value["size"])
        except (FileNotFoundError, ValueError):
            data, why = b"", blobs.MISSING
        if why:
            raise AttachmentDamaged(sha256, f"{value['name']} of {rec.number} is not handed "
                                            f"out: {why}. Run qms verify-audit.")
        audit.system_event(session, at=clock.now(), actor=user, action="attachment_downloaded",
                           changes={"number": rec.number, **value})
    return value, data
