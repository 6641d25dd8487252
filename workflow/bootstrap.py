"""Wiring for processes (CLI, web, scheduler): Settings -> database engine -> unit of work ->
Engine (with the Part 11 verifier and the action kinds features add) and the job registry the
scheduler runs. One database engine and one Engine per process; nothing below this module
reads the environment or knows which features exist."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine as DBEngine
from sqlalchemy import select

from workflow import config, snapshot
from workflow.change_control import actions as change_control_actions
from workflow.db import engines as db
from workflow.db.models import DefinitionVersion, Record
from workflow.engine.context import ActionKind, RoleHook
from workflow.engine.core import Engine
from workflow.identity.policy import Policy
from workflow.identity.users import system_user
from workflow.scheduling.context import Jobs
from workflow.scheduling.jobs import default_jobs
from workflow.signatures.mac import CredentialVerifier, load_signing_key
from workflow.signatures.part11 import Part11Verifier
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR, load_directory
from workflow.training import actions as training_actions

log = logging.getLogger(__name__)


def open_engine(url: str | None = None, verifier: CredentialVerifier | None = None,
                settings: config.Settings | None = None) -> tuple[Engine, DBEngine]:
    """The engine for a process, built from ``settings`` (default: this process's, read from
    the environment once), signing through the Part 11 verifier unless told otherwise."""
    s = settings if settings is not None else config.settings()
    dbe = db.make_engine(url or db.default_database_url(s))
    key = load_signing_key(s)
    return Engine(db.make_sessionmaker(dbe), key,
                  verifier=verifier or Part11Verifier(key, Policy.from_settings(s)),
                  system_name=s.system_name, actions=action_kinds(),
                  role_hooks=role_hooks()), dbe


def action_kinds() -> dict[str, ActionKind]:
    """The on-enter action kinds features add to the engine's built-in ones."""
    return {**change_control_actions.ACTIONS, **snapshot.ACTIONS, **training_actions.ACTIONS}


def role_hooks() -> tuple[RoleHook, ...]:
    """What runs in the unit that grants or revokes a role: the training matrix."""
    return (training_actions.on_role_change,)


def job_registry() -> Jobs:
    """The jobs a schedules file may name (the scheduler and ``qms jobs`` run these)."""
    return default_jobs()


def load_definitions(engine: Engine, directory: str | Path | None = None,
                     reason: str = "loaded by qms init") -> list[str]:
    """Publish the shipped definitions that are new to this database (initial set-up, or a
    workflow added by an upgrade). Idempotent.

    A changed version of an already published workflow is NOT published here: that is a
    change under change control (Annex 11 §10), made with ``qms definitions publish FILE``
    and published only when QA signs. Returns a line per definition.
    """
    directory = Path(directory or DEFAULT_DEFINITIONS_DIR)
    defs = load_directory(directory)
    lines = []
    with engine.unit() as session:
        actor = system_user(session)
        for d in defs.values():
            published = session.execute(
                select(DefinitionVersion.content_hash).where(DefinitionVersion.key == d.key)
            ).scalars().all()
            if published and d.content_hash not in published:
                lines.append(f"{d.key}: changed since published, NOT published: submit it with "
                             f"`qms definitions publish {directory / (d.key + '.yaml')} --as "
                             "USER --summary ...` (QA signs the change)")
                continue
            row, created = engine.registry.publish(session, d, actor, reason=reason)
            state = "published" if created else "unchanged"
            lines.append(f"{d.key}: version {row.version} {state} (sha256 {d.content_hash[:12]})")
    return lines


def register_this_system(engine: Engine, reason: str = "registered by qms init") -> str | None:
    """This QMS (``QMS_SYSTEM_NAME``) as an entry of the computerised-system inventory
    (Annex 11 §4.3; the workflow declaring the ``inventory`` capability), created by the
    system user in the workflow's initial state for its system owner to complete and QA to
    approve. Idempotent: nothing is done when an entry names this system already (in any
    state) or no workflow declares the capability. Returns the entry's number when created."""
    name = engine.system_name
    with engine.unit() as session:
        for d in sorted(engine.registry.known(session).values(), key=lambda d: d.key):
            cap = d.capabilities.inventory
            if cap is None:
                continue
            for data in session.execute(select(Record.data).where(
                    Record.workflow_key == d.key)).scalars():
                if str((data or {}).get(cap.name) or "").strip().lower() == name.lower():
                    return None
            rec = engine.start_as_system(session, d.key, {cap.name: name},
                                         reason=f"{reason}: this QMS is the first entry of "
                                                "the computerised-system inventory")
            return rec.number
    return None
