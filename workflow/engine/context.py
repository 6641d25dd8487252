"""What one unit of the engine works with (``Ctx``), what it returns (``Result``), and the
kinds of on-enter action it can run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from workflow.db import records
from workflow.db.models import Record, User
from workflow.engine import statements as st
from workflow.identity import users as identity
from workflow.keyring import KeyRing
from workflow.registry import Registry
from workflow.signatures.mac import CredentialVerifier
from workflow.spec.machine import Compiled
from workflow.spec.model import Action


@dataclass(frozen=True)
class Result:
    """What a start or fire did, as plain data (safe to use after the session closed)."""

    record_id: int
    number: str
    workflow: str
    state: str
    version: int
    moved: bool = True
    signatures_needed: int = 0
    signature_id: int | None = None
    created: tuple[str, ...] = ()


class ActionKind(Protocol):
    """An on-enter action kind (``notify``, ``create_record``...): called inside the unit
    that enters the state, after the state is set. Kinds are passed to the Engine, so a
    feature (e.g. change control's ``publish_draft``) adds one without the engine knowing it.
    """

    def __call__(self, ctx: Ctx, compiled: Compiled, rec: Record, user: User,
                 action: Action) -> None: ...


class RoleHook(Protocol):
    """Runs inside the unit that grants or revokes a role (``Engine(role_hooks=...)``), e.g.
    the training matrix assigning the role's curriculum or cancelling it."""

    def __call__(self, ctx: Ctx, change: identity.RoleChange) -> None: ...


#: ``ctx.spawn(ctx, compiled, creator, data, parent=..., link=..., reason=...)``: create a
#: linked record inside the current unit (the engine sets it to lifecycle.create; the
#: create_record action uses it, so actions need not import the lifecycle that runs them)
Spawn = Callable[..., Record]


@dataclass
class Ctx:
    """Per-unit state: the session, the time of the unit, what it created, and the engine's
    parts the unit uses."""

    session: Session
    now: datetime
    registry: Registry
    verifier: CredentialVerifier
    signing_key: KeyRing
    system_name: str
    actions: Mapping[str, ActionKind]
    spawn: Spawn
    created: list[str] = field(default_factory=list)
    depth: int = 0
    _roles: dict[int, set[str]] = field(default_factory=dict)
    #: ids of the users this unit read as active people (the actor, by name)
    read_active: set[int] = field(default_factory=set)

    def roles(self, user: User) -> set[str]:
        """The user's roles at the time of this unit (looked up once per unit)."""
        if user.id not in self._roles:
            self._roles[user.id] = identity.roles_of(self.session, user, self.now)
        return self._roles[user.id]

    def actor(self, actor: str | User) -> User:
        """The acting user, attached to the session; by name, the user and their roles at
        the time of this unit are read in one statement."""
        if isinstance(actor, User):
            user = as_actor(self.session, actor)
        else:
            user, roles = identity.get_actor(self.session, actor, self.now)
            self._roles[user.id] = roles
            if not user.is_system:
                self.read_active.add(user.id)
        remember_user(self.session, user.username, user.id)
        return user

    def user_id(self, username: str) -> int | None:
        """The id of the user ``username`` (None: no such user), once per unit."""
        return user_id(self.session, username)

    def username(self, uid: int) -> str:
        """The username of the user with id ``uid``, once per unit."""
        names: dict[int, str] = self.session.info.setdefault(_USERNAMES, {})
        if uid not in names:
            remember_user(self.session, self.session.execute(
                st.USERNAME, {"user_id": uid}).scalar_one(), uid)
        return names[uid]


#: per unit (session): username -> id and id -> username of the users it looked up; both
#: are fixed for the life of an account (usernames are never changed or reused)
_USER_IDS = "qms_user_ids"
_USERNAMES = records.CREATORS  # also filled by records.lock(with_tasks=True)


def remember_user(session: Session, username: str, uid: int) -> None:
    session.info.setdefault(_USER_IDS, {})[username] = uid
    session.info.setdefault(_USERNAMES, {})[uid] = username


def known_user_id(session: Session, username: str) -> int | None:
    """The id of ``username`` if this unit already looked it up (no statement), else None."""
    ids: dict[str, int | None] = session.info.get(_USER_IDS, {})
    return ids.get(username)


def user_id(session: Session, username: str) -> int | None:
    """The id of the user ``username`` (None: no such user), looked up once per unit."""
    ids: dict[str, int | None] = session.info.setdefault(_USER_IDS, {})
    if username not in ids:
        ids[username] = session.execute(st.USER_ID, {"username": username}).scalar_one_or_none()
    return ids[username]


def as_actor(session: Session, actor: str | User) -> User:
    """The acting user, attached to ``session``."""
    if isinstance(actor, User):
        return session.merge(actor, load=False) if actor not in session else actor
    return identity.get_user(session, actor)


def result_of(rec: Record, ctx: Ctx, *, moved: bool = True, needed: int = 0,
              signature_id: int | None = None) -> Result:
    ctx.session.flush()
    return Result(record_id=rec.id, number=rec.number, workflow=rec.workflow_key,
                  state=rec.state, version=rec.version, moved=moved,
                  signatures_needed=needed, signature_id=signature_id,
                  created=tuple(ctx.created))
