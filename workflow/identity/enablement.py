"""Signing enablement (21 CFR 11.100(b), 11.10(j); issue 14, item 6; R-P11-100b-1,
R-P11-10j-1).

Nobody signs until two facts are on record, both audited and both sealed
(:class:`~workflow.db.models.SigningEnablement`, workflow/db/seals.py):

1. an administrator recorded that the person's identity was verified, and how (a passport
   checked in person, the HR file...). The administrator is someone else: nobody enables
   themselves;
2. the person accepted the current version of the e-signature policy, shown to them in full,
   by signing it with their own password (and authenticator code where they have one) and
   the statement :data:`STATEMENT`. A new policy version must be accepted again.

:func:`require_enabled` is the one check, called by the engine's signing path
(workflow/engine/signing.py) and by the migration signature (workflow/change_control/
migrate.py): it raises :class:`~workflow.errors.SigningNotEnabled` saying what is missing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from workflow import clock
from workflow import config as qms_config
from workflow.audit import trail as audit
from workflow.db.models import SigningEnablement, User
from workflow.db.seals import seal_ok
from workflow.db.uow import Units, check_key
from workflow.errors import (
    AccountLocked,
    CredentialsRejected,
    NotAuthorized,
    SecondFactorFailed,
    SigningNotEnabled,
    WorkflowError,
)
from workflow.identity import users as identity
from workflow.identity.lockout import record_failure
from workflow.identity.passwords import password_matches
from workflow.identity.policy import Policy
from workflow.identity.totp import check_second_factor, totp_enrolled
from workflow.resources import data_file

IDENTITY = "identity_verified"
POLICY = "policy_accepted"
#: what the person affirms when accepting the policy (shown next to the policy, stored)
STATEMENT = ("I agree that my electronic signature is the legally binding equivalent of my "
             "handwritten signature.")
SHIPPED_POLICY = data_file("esignature-policy.txt")
ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class EsignPolicy:
    version: str
    title: str
    text: str
    sha256: str

    @property
    def detail(self) -> str:
        """How an acceptance names the policy (stored, sealed)."""
        return f"version {self.version} sha256 {self.sha256}"


@cache
def _read(path: Path) -> EsignPolicy:
    raw = path.read_text(encoding="utf-8")
    head, _, body = raw.partition("\n\n")
    fields = dict(line.split(":", 1) for line in head.splitlines() if ":" in line)
    version = fields.get("Version", "").strip()
    if not version:
        raise WorkflowError(f"The e-signature policy {path} has no 'Version:' line.")
    return EsignPolicy(version, fields.get("Title", "Electronic signature policy").strip(),
                       body.strip(), hashlib.sha256(raw.encode("utf-8")).hexdigest())


def current_policy(settings: qms_config.Settings | None = None) -> EsignPolicy:
    """The e-signature policy in force: QMS_ESIGN_POLICY_FILE, or the shipped text. Its first
    lines are ``Version: ...`` and ``Title: ...``, then a blank line and the text."""
    s = settings if settings is not None else qms_config.settings()
    return _read(s.esign_policy_file or SHIPPED_POLICY)


@dataclass(frozen=True)
class Fact:
    detail: str
    by: str
    at: datetime


@dataclass(frozen=True)
class Status:
    """What a person's signing enablement has and lacks."""

    identity: Fact | None
    policy: Fact | None  # the acceptance of the current policy version
    policy_version: str
    older_acceptance: str | None  # the version accepted before, when not the current one

    @property
    def can_sign(self) -> bool:
        return self.identity is not None and self.policy is not None

    def missing(self) -> list[str]:
        out = []
        if self.identity is None:
            out.append("an administrator has not yet recorded that your identity was verified")
        if self.policy is None:
            out.append(f"you have not accepted the e-signature policy (version "
                       f"{self.policy_version}) on your account page (E-signature policy)")
        return out


# a person's enablement rows with the printed name of who recorded each, in one statement
# (checked before every signature)
_ENABLEMENTS = select(SigningEnablement, User.full_name).outerjoin(
    User, User.id == SigningEnablement.recorded_by_id).where(
    SigningEnablement.user_id == bindparam("user_id")).order_by(SigningEnablement.id)


def status(session: Session, user: User, policy: EsignPolicy | None = None) -> Status:
    """``user``'s enablement (only rows whose seal holds count)."""
    policy = policy or current_policy()
    key = check_key(session)
    rows = session.execute(_ENABLEMENTS, {"user_id": user.id}).all()
    ident = accepted = None
    older = None
    for row, by_name in rows:
        if not seal_ok(key, "signing_enablements", row):
            continue
        fact = Fact(row.detail, by_name or "?", row.recorded_at)
        if row.kind == IDENTITY:
            ident = fact
        elif row.kind == POLICY:
            if row.detail == policy.detail:
                accepted = fact
            else:
                older = row.detail
    return Status(ident, accepted, policy.version, older if accepted is None else None)


def require_enabled(session: Session, user: User) -> None:
    """The one check before any signature: SigningNotEnabled unless both facts exist."""
    st = status(session, user)
    if not st.can_sign:
        raise SigningNotEnabled(user.username, st.missing())


# ------------------------------------------------------------------ recording the facts


def _add(session: Session, user: User, kind: str, detail: str, by: User) -> SigningEnablement:
    row = SigningEnablement(user_id=user.id, kind=kind, detail=detail, recorded_by_id=by.id,
                            recorded_at=clock.now())
    session.add(row)
    session.flush()
    return row


def enable_for_system(session: Session, user: User, *, reason: str) -> None:
    """Record both facts for ``user`` by the system account (demo data, the test factories
    and dry runs' throw-away signers only; never for a real person)."""
    system = identity.system_user(session)
    if status(session, user).can_sign:
        return
    _add(session, user, IDENTITY, f"system ({reason})", system)
    _add(session, user, POLICY, current_policy().detail, system)
    audit.system_event(session, at=clock.now(), actor=system, action="signing_enabled",
                       changes={"username": user.username, "by": "system"}, reason=reason)


def record_identity_verified(engine: Units, username: str, *, actor: str, method: str,
                             reason: str) -> None:
    """An administrator records that ``username``'s identity was verified and how
    (R-P11-100b-1). Audited (``identity_verified``). Nobody records it for themselves."""
    method = (method or "").strip()
    if not method:
        raise WorkflowError("Say how the identity was verified (e.g. passport checked in "
                            "person by the QA manager).")
    if not (reason or "").strip():
        raise WorkflowError("A reason is required.")
    with engine.unit() as s:
        admin = identity.get_user(s, actor)
        user = identity.get_user(s, username)
        if ADMIN_ROLE not in identity.roles_of(s, admin):
            raise NotAuthorized("Only administrators record identity verification.",
                                required_roles=(ADMIN_ROLE,))
        if admin.id == user.id:
            raise WorkflowError("You cannot record the verification of your own identity; "
                                "another administrator must.")
        _add(s, user, IDENTITY, method[:500], admin)
        audit.system_event(s, at=clock.now(), actor=admin, action="identity_verified",
                           changes={"username": user.username, "method": method[:500]},
                           reason=reason)


def accept_policy(engine: Units, username: str, *, password: str, code: str | None,
                  version: str, policy: Policy | None = None) -> None:
    """``username`` accepts the current e-signature policy by signing it with their password
    (and authenticator code where enrolled). ``version``: the version the person was shown
    (a policy changed in between is refused). A wrong password counts toward lockout.
    Audited (``esign_policy_accepted``, with the statement and the policy's SHA-256)."""
    policy = policy or Policy.from_settings()
    esign = current_policy()
    if version != esign.version:
        raise WorkflowError(f"The e-signature policy changed (now version {esign.version}); "
                            "read it again before accepting.")
    failure: WorkflowError | None = None
    with engine.unit() as s:
        user = identity.get_user(s, username)
        if user.locked_at is not None:
            raise AccountLocked(user.username)
        if not password_matches(user.password_hash, password):
            locked = record_failure(s, user, action="esign_policy_acceptance_failed",
                                    detail="wrong password", policy=policy)
            failure = AccountLocked(user.username) if locked else CredentialsRejected(
                "The password is wrong; the policy was not accepted.", user_id=user.id,
                detail="wrong password")
        else:
            method = "password"
            if totp_enrolled(user):
                try:
                    method += "+" + check_second_factor(s, user, code or "", engine.signing_key)
                except SecondFactorFailed as exc:
                    locked = record_failure(s, user, action="esign_policy_acceptance_failed",
                                            detail="wrong authentication code", policy=policy)
                    failure = AccountLocked(user.username) if locked else exc
            if failure is not None:
                pass
            elif status(s, user, esign).policy is None:
                _add(s, user, POLICY, esign.detail, user)
            if failure is None:
                audit.system_event(s, at=clock.now(), actor=user,
                                   action="esign_policy_accepted",
                                   changes={"username": user.username, "version": esign.version,
                                            "sha256": esign.sha256, "statement": STATEMENT,
                                            "method": method})
                return
    assert failure is not None
    raise failure


def signing_census(session: Session) -> tuple[int, int]:
    """(people who can sign now, active people): for the dashboard."""
    people = session.execute(select(User).where(User.active.is_(True),
                                                User.is_system.is_(False),
                                                User.password_hash.is_not(None))).scalars().all()
    esign = current_policy()
    return sum(1 for u in people if status(session, u, esign).can_sign), len(people)
