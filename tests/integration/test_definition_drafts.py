"""Definition drafts under change control (issue 9): editing with optimistic saves, located
validation, the dry run that leaves nothing behind, and publishing only through a QA-signed
definition_change record (R-A11-10-1, R-P11-10k-1, R-P11-10k-2, R-UI-4)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from tests.factories import Qms
from tests.integration import test_cli as _cli
from workflow.audit.integrity import verify
from workflow.change_control import drafts, publishing
from workflow.change_control.dry_run import dry_run
from workflow.db.models import AuditEvent, DefinitionDraft, DefinitionVersion, Record, User
from workflow.errors import (
    NotAuthorized,
    RecordNotFound,
    SegregationOfDuties,
    SignatureRequired,
    StaleRecord,
    WorkflowError,
)
from workflow.signatures.mac import VouchedSignature
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR

# the CLI fixtures of test_cli.py: a database of the test's own, `qms ...` run in-process
empty_url, qms = _cli.empty_url, _cli.qms

OLD_TITLE = "label: Approve action plan"
NEW_TITLE = "label: Approve CAPA action plan"


@pytest.fixture
def org(people, make_user):
    people["po_qa"] = make_user("pia", "process_owner", "qa", full_name="Pia PO-and-QA")
    return people


def _edited(engine, org, replace=(OLD_TITLE, NEW_TITLE)):
    d = drafts.create(engine, "capa", org["po"])
    assert d.source.count(replace[0]) == 1
    return drafts.save(engine, d.id, d.source.replace(*replace), org["po"], d.version)


def _versions(engine, key="capa"):
    with engine.reader() as s:
        return s.execute(select(DefinitionVersion.version).where(DefinitionVersion.key == key)
                         .order_by(DefinitionVersion.version)).scalars().all()


def test_edit_and_save_a_draft_and_a_stale_save_is_refused(engine, org):
    """R-UI-4 R-A11-10-1: a process owner copies the published version into a draft and
    saves it; a save naming an older edit is refused (StaleRecord), never merged; others
    may not create or save drafts."""
    d = drafts.create(engine, "capa", org["po"])
    assert (d.status, d.version, d.base_version, d.author) == ("draft", 1, 1, "paul")
    d2 = drafts.save(engine, d.id, d.source.replace(OLD_TITLE, NEW_TITLE), org["po"], 1)
    assert d2.version == 2 and NEW_TITLE in d2.source
    with pytest.raises(StaleRecord) as exc:
        drafts.save(engine, d.id, d.source + "\n# mine\n", org["po"], 1)
    assert (exc.value.expected, exc.value.actual) == (1, 2)
    assert drafts.get(engine, d.id).source == d2.source  # the other save is intact
    for who in (org["qa"], org["emp"]):
        with pytest.raises(NotAuthorized):
            drafts.save(engine, d.id, d.source, who, 2)
        with pytest.raises(NotAuthorized):
            drafts.create(engine, "capa", who)
    assert "+    " + NEW_TITLE in drafts.diff(engine, d2)
    with engine.reader() as s:
        actions = s.execute(select(AuditEvent.action).where(
            AuditEvent.action.like("definition_draft_%")).order_by(AuditEvent.id)).scalars().all()
    assert actions == ["definition_draft_created", "definition_draft_saved"]


def test_validation_reports_engine_errors_and_lints_at_their_lines(engine, org):
    """R-UI-4 R-A11-1-1: a saved draft with an engine error and a GxP lint reports both at
    their lines; it cannot be submitted."""
    d = drafts.create(engine, "capa", org["po"])
    quick = ("transitions:\n  - name: quick_close\n    from: open\n    to: closed\n"
             "    roles: [qa]\n")
    src = (d.source.replace("transitions:\n", quick, 1)
           .replace("    to: investigation\n", "    to: investigaton\n"))
    d = drafts.save(engine, d.id, src, org["po"], d.version)
    v = drafts.validate(engine, d.source, key="capa")
    lines = src.splitlines()
    bad_to = lines.index("    to: investigaton") + 1
    closed = lines.index("  closed:") + 1
    assert {(f.line, f.source) for f in v.errors} == {(bad_to, "engine"), (closed, "gxp")}
    assert "without a QA-signed transition" in [f for f in v.errors if f.source == "gxp"][
        0].message
    with pytest.raises(drafts.DraftInvalid) as exc:
        publishing.submit(engine, d.id, org["po"], "typo")
    assert {f.line for f in exc.value.findings} == {bad_to, closed}


def test_publish_needs_qa_signature_not_the_submitter_nor_another_role(engine, org):
    """R-A11-10-1 R-P11-10k-1 R-P11-10k-2: submitting starts a DCR and publishes nothing;
    approval without a signature, by a process owner or employee, or by the submitter (even
    holding QA) is refused; QA's signature "Approved for use" publishes version 2 and the
    DCR holds the signature and the published version."""
    d = drafts.create(engine, "capa", org["po_qa"])
    d = drafts.save(engine, d.id, d.source.replace(OLD_TITLE, NEW_TITLE), org["po_qa"],
                    d.version)
    r = publishing.submit(engine, d.id, org["po_qa"], "Clearer step name")
    assert r.number.startswith("DCR-") and r.state == "qa_approval"
    assert drafts.get(engine, d.id).status == "in_approval"
    assert _versions(engine) == [1]
    with pytest.raises(drafts.DraftError):  # no edits while in approval
        drafts.save(engine, d.id, d.source, org["po_qa"], drafts.get(engine, d.id).version)
    with pytest.raises(SignatureRequired):
        engine.fire(r.number, "approve", org["qa"])
    for who in (org["po"], org["emp"]):  # an employee does not even see the DCR
        with pytest.raises((NotAuthorized, RecordNotFound)):
            engine.fire(r.number, "approve", who, signature=VouchedSignature(who))
    with pytest.raises(SegregationOfDuties):
        engine.fire(r.number, "approve", org["po_qa"], signature=VouchedSignature("pia"))
    assert _versions(engine) == [1]

    done = engine.fire(r.number, "approve", org["qa"], signature=VouchedSignature("quinn"))
    assert done.state == "published"
    assert _versions(engine) == [1, 2]
    info = drafts.get(engine, d.id)
    assert (info.status, info.published_version, info.change_record) == ("published", 2,
                                                                         r.number)
    rec = engine.get(r.number)
    assert rec.data["published_version"] == 2 and rec.data["content_hash"] == \
        info.submitted_hash
    with engine.reader() as s:
        row = s.execute(select(DefinitionVersion).where(DefinitionVersion.version == 2,
                                                        DefinitionVersion.key == "capa")
                        ).scalar_one()
        publisher = s.get(User, row.published_by_id).username
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "definition_published")
                       .order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert row.content_hash == info.submitted_hash and publisher == "quinn"
    assert ev.reason == f"approved in {r.number}"
    from workflow.db.models import Signature
    with engine.reader() as s:
        sig = s.execute(select(Signature).where(Signature.record_id == rec.id)).scalar_one()
    assert (sig.meaning, sig.signer_username) == ("Approved for use", "quinn")
    with engine.reader() as s:
        report = verify(s, engine.signing_key)
    assert report.problems == []  # the DCR's trail replays, with its published_version


def test_a_draft_changed_after_submission_is_not_published(engine, org):
    """R-A11-10-1: the approval publishes only the content whose hash the DCR holds; a draft
    altered behind the editor's back makes the signed approval fail and roll back."""
    d = _edited(engine, org)
    r = publishing.submit(engine, d.id, org["po"], "Clearer step name")
    with engine.unit() as s:  # bypassing drafts.save, which refuses edits in approval
        s.execute(update(DefinitionDraft).where(DefinitionDraft.id == d.id).values(
            source=d.source.replace(NEW_TITLE, "label: Something else")))
    with pytest.raises(WorkflowError, match="changed since it was submitted"):
        engine.fire(r.number, "approve", org["qa"], signature=VouchedSignature("quinn"))
    assert engine.get(r.number).state == "qa_approval" and _versions(engine) == [1]


def test_records_pinned_to_the_old_version_keep_its_transitions(engine, org):
    """R-P11-10k-1: after version 2 (which removes a step) is published, a CAPA started on
    version 1 still has that step; a new CAPA runs on version 2 without it."""
    old = engine.start("capa", org["emp"], {"title": "Old", "description": "x"})
    d = drafts.create(engine, "capa", org["po"])
    src = d.source.replace("    from: [open, investigation, action_plan, plan_approval]\n",
                           "    from: [investigation, action_plan, plan_approval]\n")
    assert src != d.source
    d = drafts.save(engine, d.id, src, org["po"], d.version)
    r = publishing.submit(engine, d.id, org["po"], "No cancelling an open CAPA")
    engine.fire(r.number, "approve", org["qa"], signature=VouchedSignature("quinn"))
    new = engine.start("capa", org["emp"], {"title": "New", "description": "y"})
    old_rec, new_rec = engine.get(old.number), engine.get(new.number)
    assert old_rec.definition_hash != new_rec.definition_hash
    assert "cancel" in {t.name for t in engine.available_transitions(old.number, org["qa"])}
    assert "cancel" not in {t.name for t in engine.available_transitions(new.number, org["qa"])}
    res = engine.fire(old.number, "cancel", org["qa"], reason="dup",
                      signature=VouchedSignature("quinn"))
    assert res.state == "cancelled"


def test_rejected_change_returns_the_draft_to_editing(engine, org):
    """R-A11-10-1: a rejected DCR publishes nothing and the draft can be edited again."""
    d = _edited(engine, org)
    r = publishing.submit(engine, d.id, org["po"], "x")
    engine.fire(r.number, "reject", org["qa"], {"review_comment": "Not now"}, reason="no")
    info = drafts.get(engine, d.id)
    assert info.status == "draft" and _versions(engine) == [1]
    drafts.save(engine, d.id, info.source + "\n", org["po"], info.version)


def test_dry_run_walks_a_record_and_leaves_nothing_behind(engine, org):
    """R-UI-4: the dry run reaches the done state through every step (signatures included)
    or the chosen path, and no record, user, version or audit event remains."""
    d = _edited(engine, org)

    def counts():
        with engine.reader() as s:
            return tuple(s.execute(select(func.count()).select_from(t)).scalar_one()
                         for t in (Record, User, DefinitionVersion, AuditEvent))

    before = counts()
    run = dry_run(engine, d.source)
    assert run.ok and run.outcome == "done" and run.final_state == "closed", run
    assert [s.transition for s in run.steps][:3] == ["(start)", "assign", "submit_root_cause"]
    assert sum(s.signatures for s in run.steps) == 3
    chosen = dry_run(engine, d.source, path=["assign", "approve_plan"])
    assert [s.ok for s in chosen.steps] == [True, True, False]
    assert "not possible" in chosen.steps[-1].message
    assert counts() == before


def test_cli_publish_submits_and_never_publishes_alone(qms, tmp_path, request):
    """R-A11-10-1 R-P11-10k-1: `qms definitions publish FILE --as USER --summary` creates a
    draft and a DCR; nothing is published until QA signs; a non-process-owner is refused."""
    assert qms("init").exit_code == 0
    for user, role in (("paul", "process_owner"), ("emma", "employee")):
        res = qms("users", "create", user, "--name", user.title(), "--role", role,
                  "--reason", "test")
        assert res.exit_code == 0, res.output
    src = (DEFAULT_DEFINITIONS_DIR / "capa.yaml").read_text()
    f = tmp_path / "capa.yaml"
    f.write_text(src.replace(OLD_TITLE, NEW_TITLE))
    # the users have no password yet: they act in maintenance mode (R-SEC-35)
    qms = Qms(qms.url, env={"QMS_CLI_MAINTENANCE": "1"})
    request.addfinalizer(qms.close)
    res = qms("definitions", "publish", str(f), "--as", "emma", "--summary", "x",
              "--maintenance")
    assert res.exit_code == 1 and "process owners" in res.output
    res = qms("definitions", "publish", str(f), "--as", "paul", "--summary",
              "Clearer step name", "--maintenance")
    assert res.exit_code == 0, res.output
    assert "submitted for approval as DCR-" in res.output
    listing = qms("definitions", "list").output
    assert "capa                   v1" in listing and "capa                   v2" not in listing
    bad = tmp_path / "bad.yaml"
    bad.write_text(src.replace("    to: investigation\n", "    to: nowhere\n"))
    res = qms("definitions", "publish", str(bad), "--as", "paul", "--summary", "x",
              "--maintenance")
    line = src.splitlines().index("    to: investigation") + 1
    assert res.exit_code == 1 and f"{bad}:{line}: " in res.output
