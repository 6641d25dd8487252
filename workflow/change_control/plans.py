"""Migration plans: move running records from one published definition version to a later
one (issue 9 item 4, R-WF-10).

A plan is a small YAML file (format and rules in docs/definitions.md, "Migrating running
records")::

    id: MIG-CAPA-2026-01            # named in every migrated record's audit event
    workflow: capa
    from_version: 1
    to_version: 2
    mapping: {open: open, investigation: investigation, ...}   # old state -> new state
    filter: {states: [...], numbers: [...]}                     # optional
    drop_fields: [legacy_note]                                  # optional
    allow_upstream: false                                       # optional, needs a reason
    upstream_reason: ""

The rule the tool enforces: **a migration never puts a record where the new version's normal
execution could not have brought it.** :func:`validate` refuses a plan (every problem listed
at once) when

* a state that selected running records are in is left unmapped, or the mapping names a
  state the old version does not have, or a final one (closed records are never migrated);
* a target state does not exist in the new version, is final, or cannot be reached from the
  new version's initial state;
* a target is *upstream*: not the same-named state and not reachable in the new version from
  the new version's state of the source's name (a source state the new version no longer
  has counts as upstream, since nothing shows the target is not earlier). Upstream moves need
  ``allow_upstream: true`` with an ``upstream_reason``;
* per record: a forward move (source -> a later target) would skip a signed step, a step
  whose required fields the record lacks, or a step whose guard is false for the record's
  data (a migration never stands in for a signature or a check);
* per record: the new version could not have brought a record with this data to the target
  (its start-required fields, and a path from the initial state whose steps' required fields
  the record has);
* per record: the record holds data in a field the new version does not declare and the
  plan does not list it under ``drop_fields`` (dropped values are kept in the "migrated"
  audit event as old values), or a kept value is not valid for the new version's field;
  ``drop_fields`` may name only fields the new version does not declare.

:func:`load_plan` / :func:`parse_plan` read a plan (workflow/change_control/plan_file.py);
:func:`dry_run` shows what would happen and changes nothing. :func:`execute` re-validates,
verifies the signer's credentials once (meaning "Migration approved"; roles qa or the
definition's process owner role) and migrates each record in its own transaction through
:func:`workflow.change_control.migrate.migrate_records` (a signature row per record, bound to that
record's content, and a "migrated" audit event with both definition hashes, the plan and the
reason). No Flask here: the CLI (and later the editor) call these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workflow import clock
from workflow.audit import trail as audit
from workflow.change_control import migrate
from workflow.change_control.plan_file import MigrationPlan, PlanInvalid, load_plan, parse_plan
from workflow.change_control.plan_preview import Preview, RecordMove, analyse, version_of
from workflow.db.models import User
from workflow.engine.core import Engine
from workflow.errors import ReasonRequired, SignatureRequired
from workflow.identity import users as identity
from workflow.spec.model import WorkflowDefinition

__all__ = ["MEANING", "MigrationPlan", "Outcome", "PlanInvalid", "Preview", "RecordMove",
           "dry_run", "execute", "load_plan", "parse_plan", "signer_roles", "validate"]

MEANING = "Migration approved"


def validate(engine: Engine, plan: MigrationPlan) -> list[str]:
    """Every reason the plan is refused against the records as they are now ([] = valid)."""
    return dry_run(engine, plan).problems


def dry_run(engine: Engine, plan: MigrationPlan) -> Preview:
    """What the plan would do (records, state moves, tasks and timers), and its problems.
    Reads only: nothing changes."""
    with engine.reader() as session:
        return analyse(session, engine, plan)


def signer_roles(d: WorkflowDefinition) -> tuple[str, ...]:
    """Who may sign a migration: QA, or the definition's process owner role."""
    return tuple(dict.fromkeys(r for r in ("qa", d.process_owner) if r))


@dataclass
class Outcome:
    plan: MigrationPlan
    migrated: list[str]
    skipped: list[tuple[str, str]]


def execute(engine: Engine, plan: MigrationPlan, actor: str | User, signature: Any,
            reason: str) -> Outcome:
    """Validate, then migrate every selected record (one transaction each), signed once
    with meaning "Migration approved" by QA or the process owner role.

    Raises PlanInvalid (nothing migrated), ReasonRequired, SignatureRequired, and the
    signature errors of the engine's verifier (CredentialsRejected, NotAuthorized...).
    A record that changed after validation is skipped and listed in ``Outcome.skipped``;
    running the plan again picks it up (records already migrated are no longer on the old
    version, so a plan is safe to re-run).
    """
    if not (reason or "").strip():
        raise ReasonRequired(f"migrate records with plan {plan.id}")
    pv = dry_run(engine, plan)
    if pv.problems:
        raise PlanInvalid(pv.problems)
    if not pv.moves:
        raise PlanInvalid([f"no running {plan.workflow} record on version {plan.from_version} "
                           "matches the plan"])
    if signature is None:
        raise SignatureRequired("migrate", MEANING)
    with engine.reader() as session:
        new = version_of(session, engine, plan.workflow, plan.to_version)
    assert new is not None  # checked by the dry run
    moves: list[Mapping[str, Any]] = [{"record": m.record_id, "version": m.version, "state": m.to_state,
              "drop_fields": list(plan.drop_fields)} for m in pv.moves]
    results = migrate.migrate_records(engine, moves, to=new, actor=actor, signature=signature,
                                      meaning=MEANING, roles=signer_roles(new.definition),
                                      plan=plan.ref(), reason=reason)
    out = Outcome(plan, [n for n, e in results if e is None],
                  [(n, e) for n, e in results if e is not None])
    with engine.unit() as session:
        user = identity.get_user(session, actor.username if isinstance(actor, User) else actor)
        audit.system_event(session, at=clock.now(), actor=user, action="records_migrated",
                           changes={"plan": plan.ref(), "workflow": plan.workflow,
                                    "definition_hash": [pv.from_hash, pv.to_hash],
                                    "definition_version": [plan.from_version, plan.to_version],
                                    "migrated": out.migrated,
                                    "skipped": [n for n, _ in out.skipped]},
                           reason=reason)
    return out
