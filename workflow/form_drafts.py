"""Drafts of unsubmitted forms: what a person typed into a step's form (or a new record's),
kept on the server while they type, so an idle timeout or a closed tab loses nothing.

A draft is per person and form (``<record number>/<step>`` or ``new/<workflow>``), holds the
form's fields as the browser would submit them (name, value pairs), and is:

- never part of a record or the audit trail: it lives in ``form_drafts`` only, and what it
  holds becomes record data only when the person submits the form, through the engine;
- visible only to its owner (every function takes the owner's user id);
- size-limited (``QMS_DRAFT_MAX_BYTES``);
- free of secrets: password, authentication code and CSRF fields are dropped before saving;
- deleted when the form is submitted successfully (:func:`discard`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workflow import clock
from workflow.db.models import FormDraft
from workflow.db.uow import Units
from workflow.errors import ValidationFailed

#: ``CAPA-2026-0001/approve_plan`` or ``new/deviation``
FORM_KEY = re.compile(r"^(new/[a-z][a-z0-9_]{0,39}|[A-Za-z0-9-]{1,40}/[a-z][a-z0-9_]{0,79})$")
#: fields never kept in a draft (credentials and the CSRF token)
SECRET_FIELDS = frozenset({"csrf_token", "sig_password", "sig_totp", "sig_username"})


@dataclass(frozen=True)
class Draft:
    form_key: str
    fields: list[tuple[str, str]]
    updated_at: datetime


def check_key(form_key: str) -> str:
    if not FORM_KEY.match(form_key or ""):
        raise ValidationFailed({"form": "is not a form that keeps drafts"})
    return form_key


def kept(fields: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The fields a draft keeps: strings only, secrets dropped."""
    return [(str(n), str(v)) for n, v in fields
            if isinstance(n, str) and isinstance(v, str) and n not in SECRET_FIELDS]


def save(units: Units, user_id: int, form_key: str, fields: Iterable[tuple[str, str]], *,
         max_bytes: int, record_id: int | None = None) -> datetime:
    """Keep (or replace) the person's draft of ``form_key``; returns when it was saved.
    Raises ValidationFailed when the key is not a draft form's or the draft is larger than
    ``max_bytes`` (nothing is saved then)."""
    check_key(form_key)
    text = json.dumps(kept(fields), ensure_ascii=False, separators=(",", ":"))
    size = len(text.encode())
    if size > max_bytes:
        raise ValidationFailed({"draft": f"is {size} bytes, more than the {max_bytes} bytes a "
                                         "draft may hold; submit the form or shorten it"})
    now = clock.now()
    for attempt in (1, 2):
        try:
            with units.unit() as s:
                row = s.execute(select(FormDraft).where(
                    FormDraft.user_id == user_id, FormDraft.form_key == form_key)
                ).scalar_one_or_none()
                if row is None:
                    s.add(FormDraft(user_id=user_id, form_key=form_key, record_id=record_id,
                                    data=text, updated_at=now))
                else:
                    row.data, row.updated_at = text, now
            return now
        except IntegrityError:
            # two saves of the same new draft at once (two tabs): the other one inserted
            # it; the second attempt updates it
            if attempt == 2:
                raise
    return now  # pragma: no cover - the loop returns or raises


def get(session: Session, user_id: int, form_key: str) -> Draft | None:
    """The person's draft of ``form_key``, if any (another person's draft is never read)."""
    row = session.execute(select(FormDraft).where(
        FormDraft.user_id == user_id, FormDraft.form_key == form_key)).scalar_one_or_none()
    if row is None:
        return None
    try:
        pairs = [(str(n), str(v)) for n, v in json.loads(row.data)]
    except (ValueError, TypeError):
        return None
    return Draft(row.form_key, pairs, clock.as_utc(row.updated_at))


def exists(session: Session, user_id: int, form_key: str) -> bool:
    """Whether the person keeps a draft of ``form_key`` (read before a submit, so a submit
    without a draft writes nothing more than its step)."""
    return session.execute(select(FormDraft.id).where(
        FormDraft.user_id == user_id, FormDraft.form_key == form_key).limit(1)).first() \
        is not None


def discard(units: Units, user_id: int, form_key: str) -> bool:
    """Delete the person's draft of ``form_key`` (after a successful submit, or when they
    discard it); returns whether there was one."""
    with units.unit() as s:
        result = s.execute(delete(FormDraft).where(FormDraft.user_id == user_id,
                                                   FormDraft.form_key == form_key))
        return bool(getattr(result, "rowcount", 0))
