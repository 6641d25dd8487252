"""A person's profile: time zone, e-mail address and notification preferences.

People change their own on the profile page; an administrator changes them for someone
(giving a reason). Both go through :func:`update_profile`, one unit of work that validates
everything first (nothing changes when one value is refused), writes the user row (its seal
is renewed by the unit of work: the e-mail address is a sealed column) and appends one
``profile_changed`` event to the system chain with every changed value, old and new.

Notification preferences say, per kind of message, whether it reaches the person by e-mail
and in the app. Messages that concern their account's security (:data:`MANDATORY`) always
reach them both ways: nobody can switch off the news that their account was locked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import Session

from workflow import clock
from workflow import config as qms_config
from workflow.audit import trail as audit
from workflow.db.models import User
from workflow.db.uow import Units
from workflow.errors import NotAuthorized, ValidationFailed, WorkflowError
from workflow.identity import users as identity
from workflow.identity.admin import ADMIN_ROLE, acting_user

#: the kinds of message a person may choose how to receive, with what the profile page calls them
CHOOSABLE: dict[str, str] = {
    "task_assigned": "A task is assigned to me",
    "signature_requested": "My signature is requested",
    "due_soon": "A task of mine is due soon",
    "overdue": "A task of mine is overdue",
    "escalation": "Escalations to my role",
    "review_opened": "A periodic review was opened",
    "effectiveness_due": "An effectiveness check is due",
    "generic": "Other news about records I work on",
}
#: kinds that always reach the person both ways (their account's security)
MANDATORY = frozenset({"account_locked", "password_expiring", "integrity_check_failed"})
CHANNELS = ("email", "in_app")
NOTIFY_MODES = ("immediate", "digest")


@dataclass(frozen=True)
class Profile:
    username: str
    full_name: str
    email: str
    timezone: str
    notify_mode: str
    #: kind -> {"email": bool, "in_app": bool}, every choosable kind present
    prefs: dict[str, dict[str, bool]]


def prefs_of(user: User) -> dict[str, dict[str, bool]]:
    """The person's preferences with the defaults (everything, both ways) filled in."""
    stored = user.notify_prefs or {}
    return {kind: {ch: bool((stored.get(kind) or {}).get(ch, True)) for ch in CHANNELS}
            for kind in CHOOSABLE}


def wants(user: User, kind: str, channel: str) -> bool:
    """Whether a message of ``kind`` reaches ``user`` on ``channel`` (``email``/``in_app``).
    Security messages always do; a kind the profile does not list counts as ``generic``."""
    if kind in MANDATORY:
        return True
    return prefs_of(user)[kind if kind in CHOOSABLE else "generic"][channel]


def profile(user: User) -> Profile:
    return Profile(user.username, user.full_name, user.email, user.timezone, user.notify_mode,
                   prefs_of(user))


def clean_email(value: str) -> str:
    """The address as stored (normalised), or ValidationFailed; an empty value is allowed
    (no e-mail: in-app messages only). Syntax only: no DNS lookup on a closed network."""
    value = value.strip()
    if not value:
        return ""
    try:
        return validate_email(value, check_deliverability=False,
                              globally_deliverable=False).normalized
    except EmailNotValidError as exc:
        raise ValidationFailed({"email": f"is not a usable e-mail address: {exc}"}) from None


def clean_prefs(prefs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, bool]]:
    unknown = sorted(set(prefs) - set(CHOOSABLE))
    if unknown:
        raise ValidationFailed({"prefs": f"unknown kind of notification: {', '.join(unknown)}"})
    out = {}
    for kind in CHOOSABLE:
        given = prefs.get(kind) or {}
        bad = sorted(set(given) - set(CHANNELS))
        if bad:
            raise ValidationFailed({"prefs": f"unknown channel: {', '.join(bad)}"})
        out[kind] = {ch: bool(given.get(ch, False)) for ch in CHANNELS}
    return out


def update_profile(engine: Units, username: str, *, actor: str, timezone: str | None = None,
                   email: str | None = None, notify_mode: str | None = None,
                   prefs: Mapping[str, Mapping[str, Any]] | None = None,
                   department: str | None = None, reason: str = "") -> list[str]:
    """Change ``username``'s profile (each value given; None leaves it). ``actor``: the
    person themselves, or an administrator, who must give a ``reason``. Returns the names of
    the values that changed (an empty list changes nothing and records nothing).

    ``department`` (an empty value clears it) is the area the ``not_in_area`` separation
    rule reads: only an administrator other than the person changes it.

    Raises ValidationFailed (field -> message) before anything changes, NotAuthorized when
    ``actor`` is neither the person nor an administrator."""
    errors: dict[str, str] = {}
    new: dict[str, Any] = {}
    if timezone is not None:
        if qms_config.is_zone(timezone.strip()):
            new["timezone"] = timezone.strip()
        else:
            errors["timezone"] = qms_config.zone_problem(timezone)
    if email is not None:
        try:
            new["email"] = clean_email(email)
        except ValidationFailed as exc:
            errors.update(exc.errors)
    if notify_mode is not None:
        if notify_mode in NOTIFY_MODES:
            new["notify_mode"] = notify_mode
        else:
            errors["notify_mode"] = f"must be one of {', '.join(NOTIFY_MODES)}"
    if prefs is not None:
        try:
            new["notify_prefs"] = clean_prefs(prefs)
        except ValidationFailed as exc:
            errors.update(exc.errors)
    if department is not None:
        cleaned = " ".join(department.split())
        if len(cleaned) > 100:
            errors["department"] = "must be at most 100 characters"
        new["department"] = cleaned or None
    if errors:
        raise ValidationFailed(errors)
    with engine.unit() as session:
        user = identity.get_user(session, username)
        by = user if actor == username else _administrator(session, actor, reason)
        if (department is not None and by is user
                and (user.department or None) != new["department"]):
            # separation of duties reads it: nobody moves themselves out of an area
            raise NotAuthorized("A person's department is set by an administrator, not by "
                                "the person themselves.")
        changes: dict[str, Any] = {}
        for name, value in new.items():
            old = prefs_of(user) if name == "notify_prefs" else getattr(user, name)
            if old != value:
                changes[name] = [old, value]
                setattr(user, name, value)
        if not changes:
            return []
        audit.system_event(session, at=clock.now(), actor=by, action="profile_changed",
                           changes={"username": user.username, **changes},
                           reason=reason.strip() or None)
        return sorted(changes)


def _administrator(session: Session, actor: str, reason: str) -> User:
    admin = acting_user(session, actor)
    if not admin.is_system and ADMIN_ROLE not in identity.roles_of(session, admin):
        raise NotAuthorized("Only the person or an administrator can change a profile.")
    if not reason.strip():
        raise WorkflowError("A reason is required to change someone else's profile.")
    return admin
