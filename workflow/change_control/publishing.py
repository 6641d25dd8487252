"""Change-controlled publishing of definition drafts (issue 9; R-A11-10-1, R-P11-10k-1).

:func:`submit` starts a ``definition_change`` record (DCR) holding the draft's id and
content hash. QA approves the DCR with an electronic signature ("Approved for use", never
the submitter); entering its ``published`` state runs the engine action ``publish_draft``,
whose body is :func:`publish_from_record`: it publishes exactly the submitted content as
version N+1 - or refuses when the draft changed since. Records keep the version they
started on (pinned by content hash).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import clock
from workflow.audit import trail as audit
from workflow.change_control import drafts
from workflow.change_control.drafts import (
    CHANGE_WORKFLOW,
    DraftError,
    DraftInfo,
    DraftInvalid,
    effective_status,
    latest_row,
    load_draft,
    require_editor,
)
from workflow.db.models import DefinitionVersion, DraftStatus, Record, User
from workflow.engine.core import Engine, Result
from workflow.errors import (
    DefinitionError,
    NotAuthorized,
    StaleRecord,
    ValidationFailed,
    WorkflowError,
)
from workflow.identity import users as identity
from workflow.registry import Registry
from workflow.spec.lints import Finding, validate_text
from workflow.spec.load import load_text
from workflow.spec.source import bounded_load

log = logging.getLogger(__name__)


def submit(engine: Engine, draft_id: int, actor: str, summary: str,
           expected_version: int | None = None) -> Result:
    """Submit a valid draft for approval: in ONE transaction the draft becomes in_approval
    and a definition_change record (DCR) starts holding its id and content hash. Nothing is
    published here; QA's signed approval of the DCR publishes (R-A11-10-1)."""
    if not (summary or "").strip():
        raise ValidationFailed({"change_summary": "is required: say what changes and why"})
    with engine.reader() as s:
        d0 = load_draft(s, draft_id)
        known = engine.registry.known(s)
    v = validate_text(d0.source, known, key=d0.key, origin=f"draft #{draft_id}")
    if not v.ok:
        raise DraftInvalid(v.errors)
    definition = v.definition
    assert definition is not None
    with engine.unit() as s:
        now = clock.now()
        user = identity.get_user(s, actor)
        require_editor(s, user)
        d = load_draft(s, draft_id, lock=True)
        if expected_version is not None and d.version != expected_version:
            raise StaleRecord(f"Draft #{draft_id}", expected_version, d.version)
        if d.source != d0.source:
            raise StaleRecord(f"Draft #{draft_id}", d0.version, d.version)
        rec = s.get(Record, d.change_record_id) if d.change_record_id else None
        if effective_status(d, rec) != DraftStatus.DRAFT:
            raise DraftError(f"Draft #{draft_id} is not an open draft (it is "
                             f"{effective_status(d, rec).replace('_', ' ')}).")
        same = s.execute(select(DefinitionVersion).where(
            DefinitionVersion.content_hash == definition.content_hash)).scalar_one_or_none()
        if same is not None:
            raise DraftError(f"This content is already published as {same.key} version "
                             f"{same.version}; there is nothing to approve.")
        latest = latest_row(s, d.key)
        if (latest.version if latest else None) != d.base_version:
            raise DraftError(f"{d.key} version {latest.version if latest else '?'} was "
                             f"published after this draft was started from version "
                             f"{d.base_version}; start a new draft from it.")
        compiled = engine.registry.latest(s, CHANGE_WORKFLOW)
        if not identity.roles_of(s, user) & set(compiled.definition.start_roles):
            raise NotAuthorized("Submitting a definition change needs the role: "
                                f"{', '.join(compiled.definition.start_roles)}.")
        data = {"title": f"{definition.title}: version {(d.base_version or 0) + 1}"[:200],
                "definition": d.key, "draft_id": d.id,
                "content_hash": definition.content_hash,
                "base_version": d.base_version or 0, "change_summary": summary.strip()}
        rec = engine.start_in(s, CHANGE_WORKFLOW, user, data,
                              reason="definition draft submitted")
        d.status = DraftStatus.IN_APPROVAL
        d.submitted_hash = definition.content_hash
        d.change_record_id = rec.id
        d.version += 1
        d.updated_at = now
        d.updated_by_id = user.id
        audit.system_event(s, at=now, actor=user, action="definition_draft_submitted",
                           changes={"draft": d.id, "key": d.key, "record": rec.number,
                                    "content_hash": definition.content_hash},
                           reason=summary.strip())
        return Result(record_id=rec.id, number=rec.number, workflow=rec.workflow_key,
                      state=rec.state, version=rec.version, created=(rec.number,))


def publish_from_record(session: Session, registry: Registry, rec: Record, user: User,
                        params: Mapping[str, Any], *, at: datetime) -> int:
    """The body of the ``publish_draft`` engine action, inside the approving transition's
    transaction (``session``; ``user`` is the actor, ``params`` the action's parameters from
    the definition, ``at`` the transition's time):
    publish the draft this record holds as the next version of its workflow. Refuses (the
    whole step rolls back) when the draft is not the one submitted with this record, its
    content hash differs from the one the record holds, or another version was published
    meanwhile. Returns the new version number."""
    draft_id = rec.data.get(params.get("draft_field", "draft_id"))
    expected_hash = rec.data.get(params.get("hash_field", "content_hash"))
    if not draft_id or not expected_hash:
        raise WorkflowError(f"{rec.number} names no draft and content hash to publish.")
    d = load_draft(session, int(draft_id), lock=True)
    if d.change_record_id != rec.id or d.status != DraftStatus.IN_APPROVAL:
        raise WorkflowError(f"Draft #{d.id} is not awaiting approval by {rec.number}; "
                            "nothing was published.")
    try:
        definition = load_text(d.source, origin=f"draft #{d.id}",
                               known_workflows=registry.known(session))
    except DefinitionError as exc:
        raise WorkflowError(f"Draft #{d.id} no longer validates ({exc.problems[0]}); "
                            "nothing was published.") from None
    if definition.content_hash != expected_hash or d.submitted_hash != expected_hash:
        raise WorkflowError(
            f"Draft #{d.id} changed since it was submitted with {rec.number} (content hash "
            f"{definition.content_hash[:12]}, submitted {str(expected_hash)[:12]}); nothing "
            "was published. Reject this change and submit the draft again.")
    latest = latest_row(session, d.key)
    if (latest.version if latest else None) != d.base_version:
        raise WorkflowError(f"{d.key} version {latest.version if latest else '?'} was published "
                            f"after draft #{d.id} was started from version {d.base_version}; "
                            "nothing was published.")
    row, created = registry.publish(session, definition, user,
                                    reason=f"approved in {rec.number}")
    if not created:
        raise WorkflowError(f"This content is already published as version {row.version}.")
    d.status = DraftStatus.PUBLISHED
    d.published_version_id = row.id
    d.version += 1
    d.updated_at = at
    vf = params.get("version_field")
    if vf and rec.data.get(vf) != row.version:
        old = rec.data.get(vf)
        rec.data = {**rec.data, vf: row.version}
        audit.record_event(session, rec, at=at, actor=user, action="update",
                           changes={vf: [old, row.version]},
                           reason=f"{d.key} published as version {row.version}")
    log.info("%s: %s published as version %s", rec.number, d.key, row.version)
    return row.version


def publish_file(engine: Engine, path: str, actor: str, summary: str) -> tuple[DraftInfo, Result]:
    """``qms definitions publish FILE --as USER --summary TEXT``: a draft of FILE's workflow
    is created and submitted; QA's signed approval of the DCR publishes it, as in the UI."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        key = (bounded_load(text, path) or {}).get("key")
    except (yaml.YAMLError, AttributeError, DefinitionError):
        key = None
    if not isinstance(key, str) or not key:
        v = drafts.validate(engine, text, origin=path)
        raise DraftInvalid(v.errors or [Finding(1, "the file names no key:")])
    v = drafts.validate(engine, text, key=key, origin=path)
    if not v.ok:
        raise DraftInvalid(v.errors)
    draft = drafts.create(engine, key, actor, source=text)
    result = submit(engine, draft.id, actor, summary)
    return drafts.get(engine, draft.id), result
