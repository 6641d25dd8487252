"""SQLAlchemy 2.x typed models. The schema itself changes only through Alembic (migrations/).

GxP records are never deleted: no relationship cascades deletes, and the audit table refuses
UPDATE and DELETE at the database level (triggers, see migrations/).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

# re-exported: the base and column type every model module and migration test uses
from workflow.db.base import (  # noqa: F401
    NAMING_CONVENTION,
    UNMODELLED_TABLES,
    Base,
    UTCDateTime,
    modelled,
)
from workflow.db.base import enum_column as _enum


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class TimerStatus(enum.StrEnum):
    PENDING = "pending"
    FIRED = "fired"
    CANCELLED = "cancelled"
    FAILED = "failed"


class ExtensionStatus(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    # credentials (workflow/identity/); secrets are never shown, only hashes/ciphertext stored
    password_hash: Mapped[str | None] = mapped_column(String(200))
    password_changed_at: Mapped[datetime | None]
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False,
                                                       server_default=false())
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_at: Mapped[datetime | None]
    # a time-limited lockout ends at locked_until (None: until an administrator unlocks);
    # lockout_count: consecutive lockouts, each one twice as long (workflow/identity/lockout.py)
    locked_until: Mapped[datetime | None]
    lockout_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    totp_secret: Mapped[str | None] = mapped_column(String(300))  # encrypted with the server key
    totp_enabled_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    deactivated_at: Mapped[datetime | None]
    notify_mode: Mapped[str] = mapped_column(String(20), default="immediate",
                                             server_default="immediate")  # or "digest"
    # which notification kinds reach the person by e-mail and in the app (identity/profile.py);
    # None: the defaults (everything, both ways)
    notify_prefs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the organisational area (department) the person belongs to; set by an administrator,
    # read by the ``not_in_area`` separation rule (an auditor does not audit their own area)
    department: Mapped[str | None] = mapped_column(String(100))
    seal: Mapped[str] = mapped_column(String(64), default="", server_default="")  # db.seals.row_seal

    # usernames are unique regardless of case and never reused (R-P11-300a-1)
    __table_args__ = (Index("uq_users_username_lower", func.lower(username), unique=True),)


class RoleGrant(Base):
    __tablename__ = "role_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(40), index=True)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    granted_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    seal: Mapped[str] = mapped_column(String(64), default="", server_default="")  # db.seals.row_seal


class GrantRequest(Base):
    """A grant of a privileged role waiting for a second administrator (issue 14, item 5):
    approving it writes the role grant (audited); the requester, the grantee and the approver
    are three different accounts (workflow/identity/grants.py)."""

    __tablename__ = "grant_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[datetime | None]
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")
    #: "" while pending, then "approved" or "rejected"
    decision: Mapped[str] = mapped_column(String(20), default="", server_default="")
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(Text)


class SigningEnablement(Base):
    """What lets a person sign (21 CFR 11.100(b), 11.10(j); issue 14, item 6): an
    administrator's record that their identity was verified (``kind="identity_verified"``,
    ``detail``: how), and their own acceptance of the e-signature policy
    (``kind="policy_accepted"``, ``detail``: the policy version and its SHA-256). Rows are
    only added, and sealed like grants (workflow/db/seals.py)."""

    __tablename__ = "signing_enablements"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    detail: Mapped[str] = mapped_column(Text)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime]
    seal: Mapped[str] = mapped_column(String(64), default="", server_default="")


class DefinitionVersion(Base):
    """A published, immutable workflow definition version, pinned by content hash."""

    __tablename__ = "definition_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime]
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (UniqueConstraint("key", "version"),)


class RecordCounter(Base):
    """Next record number per workflow prefix and year (gap-free: bumped in the same
    transaction that creates the record, so a rollback gives the number back)."""

    __tablename__ = "record_counters"

    prefix: Mapped[str] = mapped_column(String(10), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


class Record(Base):
    __tablename__ = "records"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    workflow_key: Mapped[str] = mapped_column(String(40))
    definition_id: Mapped[int] = mapped_column(ForeignKey("definition_versions.id"))
    definition_hash: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300), default="")
    state: Mapped[str] = mapped_column(String(40))
    state_visit: Mapped[int] = mapped_column(Integer, default=1)
    # jsonb on PostgreSQL: stored parsed, so a field is read without parsing the document
    # (migration 0021); SQLite keeps JSON as text
    data: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"),
                                                 default=dict)
    version: Mapped[int] = mapped_column(Integer)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(10))
    due_original: Mapped[datetime | None]
    due_current: Mapped[datetime | None]
    audit_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    audit_head: Mapped[str] = mapped_column(String(64), default="")
    seal: Mapped[str] = mapped_column(String(64), default="", server_default="")  # audit.record_seal

    # the engine sets the next version itself; every UPDATE still checks the old one
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}
    __table_args__ = (
        Index("ix_records_workflow_state", "workflow_key", "state"),
        Index("ix_records_due_current", "due_current"),
        # record search's "recently updated" sort pages in this index's order (migration 0014)
        Index("ix_records_updated_at", "updated_at", "id"),
        # KPI cohorts read records of a workflow by these columns only: the index covers
        # them, so they never read the wide rows (migration 0017, R-PERF-41); the cohorts
        # select the id too, which SQLite keeps in every index and PostgreSQL only when
        # included (migration 0022)
        Index("ix_records_kpi", "workflow_key", "closed_at", "created_at", "outcome",
              "due_current", "due_original", "definition_hash", "created_by_id",
              postgresql_include=["id"]),
    )


class SavedSearch(Base):
    """A person's saved record search (the /records page): a name and the search's query
    parameters as JSON. A preference, not GxP data: not audited, deleted when unwanted."""

    __tablename__ = "saved_searches"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("user_id", "name"),)


class RecordLink(Base):
    __tablename__ = "record_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("records.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("records.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (UniqueConstraint("source_id", "target_id", "kind"),)


class Task(Base):
    """Work owed in a state: open to a role (claimable) or assigned to one user."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id"))
    state: Mapped[str] = mapped_column(String(40))
    state_visit: Mapped[int] = mapped_column(Integer)
    role: Mapped[str | None] = mapped_column(String(40))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus, "task_status"))
    opened_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_by_transition: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        Index("ix_tasks_record_status", "record_id", "status"),
        # the visibility rule's "has (had) a task on it" for lists (rules.visible_clause):
        # the records a person worked on, from their own tasks (migration 0019)
        Index("ix_tasks_assignee_record", "assignee_id", "record_id"),
        # the inbox (workflow/rules.py inbox_branches): open tasks by assignee, and
        # unassigned open tasks by role, each in (due, id) order; partial (migration 0012),
        # so done tasks - most of them - are not indexed here; assigned ones only in the
        # first (migration 0020), so no planner reads a claimable branch through it
        Index("ix_tasks_open_assignee_due", "assignee_id", "due_at", "id",
              sqlite_where=text("status = 'open' AND assignee_id IS NOT NULL"),
              postgresql_where=text("status = 'open' AND assignee_id IS NOT NULL")),
        Index("ix_tasks_claimable_role_due", "role", "due_at", "id",
              sqlite_where=text("status = 'open' AND assignee_id IS NULL"),
              postgresql_where=text("status = 'open' AND assignee_id IS NULL")),
    )



#: ``tasks.status = 'open'`` written as a literal, never as a bound parameter. SQLite plans a
#: statement again on EVERY execution when a bound parameter is compared with a value a
#: partial index's WHERE names (``status = 'open'``, migration 0012): binding it marks the
#: prepared statement expired (issue 18: the record lock read 174 us instead of 26, closing
#: the tasks 87 instead of 16). PostgreSQL's generic plans cannot prove a parameter equal
#: to it either. Every query of open tasks uses this.
OPEN_TASK = Task.__table__.c.status == literal_column("'open'")


class Signature(Base):
    """An electronic signature, bound to the record's content at signing by an HMAC."""

    __tablename__ = "signatures"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id"), index=True)
    record_version: Mapped[int] = mapped_column(Integer)
    state_visit: Mapped[int] = mapped_column(Integer)
    transition: Mapped[str] = mapped_column(String(40))
    meaning: Mapped[str] = mapped_column(String(80))
    signer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    signer_name: Mapped[str] = mapped_column(String(200))
    signer_username: Mapped[str] = mapped_column(String(64))
    signer_role: Mapped[str] = mapped_column(String(200))  # "qa" or "qa+process_owner"
    method: Mapped[str] = mapped_column(String(40))
    signed_at: Mapped[datetime]
    content_hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class Timer(Base):
    __tablename__ = "timers"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id"))
    state_visit: Mapped[int] = mapped_column(Integer)
    transition: Mapped[str] = mapped_column(String(40))
    fire_at: Mapped[datetime]
    status: Mapped[TimerStatus] = mapped_column(_enum(TimerStatus, "timer_status"))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_timers_status_fire_at", "status", "fire_at"),)


class DueDateExtension(Base):
    __tablename__ = "due_date_extensions"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id"), index=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime]
    old_due: Mapped[datetime | None]
    new_due: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[ExtensionStatus] = mapped_column(_enum(ExtensionStatus, "extension_status"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(Text)
    signature_id: Mapped[int | None] = mapped_column(ForeignKey("signatures.id"))


class OutboxMessage(Base):
    """A notification written in the same transaction as its cause, delivered after commit."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime]
    record_id: Mapped[int | None] = mapped_column(ForeignKey("records.id"))
    recipient_role: Mapped[str | None] = mapped_column(String(40))
    recipient_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # delivery (notifications/): pending -> sent | dead (after N attempts); see dispatcher
    kind: Mapped[str] = mapped_column(String(40), default="generic", server_default="generic")
    channel: Mapped[str] = mapped_column(String(20), default="all", server_default="all")
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    # what the message is about, written by the engine when it queues it (labels, the due
    # date, the steps expected, the state visit whose task it announces): read at delivery
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AuditChain(Base):
    """Head of a non-record audit chain (e.g. ``system``); record chains keep their head on
    the record row so that the row lock serialising transitions also serialises the chain."""

    __tablename__ = "audit_chains"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head: Mapped[str] = mapped_column(String(64), default="")
    seal: Mapped[str] = mapped_column(String(64), default="", server_default="")  # db.seals.row_seal


class AuditEvent(Base):
    """Append-only: the database refuses UPDATE and DELETE on this table (triggers)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    chain: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[int | None] = mapped_column(ForeignKey("records.id"))
    record_version: Mapped[int | None] = mapped_column(Integer)
    definition_hash: Mapped[str | None] = mapped_column(String(64))
    transition: Mapped[str | None] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(40))
    to_state: Mapped[str | None] = mapped_column(String(40))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        Index("ix_audit_events_record_id", "record_id"),
        Index("ix_audit_events_at", "at"),
        # KPIs: entries into a state and transitions leaving a state, by time; partial
        # (migration 0007): the many events without a state are not indexed
        Index("ix_audit_events_to_state", "to_state", "at", "record_id",
              sqlite_where=text("to_state IS NOT NULL"),
              postgresql_where=text("to_state IS NOT NULL")),
        Index("ix_audit_events_from_state", "from_state", "at", "record_id",
              sqlite_where=text("from_state IS NOT NULL"),
              postgresql_where=text("from_state IS NOT NULL")),
        # a milestone's entries per record (migration 0017, R-PERF-42)
        Index("ix_audit_events_record_state", "record_id", "to_state", "at",
              sqlite_where=text("to_state IS NOT NULL"),
              postgresql_where=text("to_state IS NOT NULL")),
    )


class PasswordHistory(Base):
    """Earlier password hashes, so that the last N cannot be reused."""

    __tablename__ = "password_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[datetime]


class RecoveryCode(Base):
    """One-time TOTP recovery codes, stored hashed."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class UserSession(Base):
    """A server-side login session: the "continuous period of controlled system access" of
    Part 11 §11.200(a)(1). Only a hash of the session token is stored."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(40))
    first_signed_at: Mapped[datetime | None]
    mfa_at: Mapped[datetime | None]
    client: Mapped[str] = mapped_column(String(200), default="")  # the browser (user agent)
    ip: Mapped[str] = mapped_column(String(64), default="", server_default="")


class LoginChallenge(Base):
    """The pending second-factor step of a login, after a correct password (issue 14 item 2).

    Kept server-side: the browser holds only the secret whose hash is ``token_hash``. It
    expires after minutes, is used once (``used_at``), and is bound to the password it was
    issued for (``password_version``): a password change in between voids it."""

    __tablename__ = "login_challenges"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    password_version: Mapped[str] = mapped_column(String(64))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False,
                                                       server_default=false())
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    ip: Mapped[str] = mapped_column(String(64), default="", server_default="")


class ThrottleCounter(Base):
    """Attempts per key (client address, account) in one time window, shared by every worker
    process through the database (workflow/identity/throttle.py)."""

    __tablename__ = "throttle_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch seconds
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class JobRun(Base):
    """One run of a scheduled job for one period. The unique (job, period_key) row is written
    in the same transaction as what the job creates, so a job runs once per period even with
    several scheduler processes (the insert is the claim)."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(80))
    period_key: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20), default="done")  # done | failed
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    runner: Mapped[str] = mapped_column(String(120), default="")

    __table_args__ = (UniqueConstraint("job", "period_key"),)


class Notification(Base):
    """An in-app message for one user (the bell); delivered from the outbox."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    created_at: Mapped[datetime]
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(300))
    read_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_notifications_user_read", "user_id", "read_at"),)


class ApiToken(Base):
    """A personal API token: only its hash is stored; scopes read, write, sign."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # shown in lists to recognise a token
    scopes: Mapped[str] = mapped_column(String(100))  # space-separated: read write sign
    created_at: Mapped[datetime]
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    last_used_at: Mapped[datetime | None]
    # set when an administrator resets the owner's password or authenticator; the token
    # works again only after its owner confirms it on the account page
    suspended_at: Mapped[datetime | None]
    suspend_reason: Mapped[str | None] = mapped_column(String(200))
    seal: Mapped[str] = mapped_column(String(64), default="", server_default="")  # db.seals.row_seal


# the people index (migration 0015), in a module of its own
# definition and form drafts, in a module of their own
from workflow.db.drafts import DefinitionDraft, DraftStatus, FormDraft  # noqa: E402,F401
from workflow.db.people import DefinitionPerson, RecordPerson  # noqa: E402,F401
