"""Attachments (issue 17 item 2): files stored by SHA-256, limits, audited upload and
download, visibility, and tampering detected by verify-audit and shown as a superseded
signature. Runs on SQLite and, with QMS_TEST_DATABASE_URL, on PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from sqlalchemy import func, select, update

from tests.factories import sign
from workflow import blobs
from workflow.audit import integrity
from workflow.db.models import AuditEvent, Record
from workflow.errors import (
    AttachmentDamaged,
    AttachmentTooLarge,
    AttachmentTypeRefused,
    RecordNotFound,
    ValidationFailed,
)
from workflow.queries import attachments, copies, records

PDF = (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n"
       b"%%EOF\n")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("QMS_ATTACHMENT_DIR", str(tmp_path / "files"))
    return tmp_path / "files"


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def events(engine, action: str) -> list[AuditEvent]:
    with engine.reader() as s:
        return list(s.execute(select(AuditEvent).where(AuditEvent.action == action)
                              .order_by(AuditEvent.id)).scalars())


def capa_at_implementation(engine, people) -> str:
    n = engine.start("capa", people["emp"], {"title": "Label mix-up",
                                             "description": "Wrong labels"}).number
    engine.fire(n, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(n, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "Roll swap not verified."})
    engine.fire(n, "submit_plan", people["owner"], {
        "actions": [{"description": "Second-person label check", "responsible": people["owner"],
                     "due": "2026-04-30"}],
        "effectiveness_criteria": "No mix-ups in 3 months"})
    engine.fire(n, "approve_plan", people["qa"], signature=sign(people["qa"]))
    return n


def implemented_with(engine, people, n: str, value: dict) -> None:
    actions = [{**a, "done": True} for a in engine.get(n).data["actions"]]
    engine.fire(n, "complete_implementation", people["owner"],
                {"implementation_summary": "Check added to SOP-12.", "actions": actions,
                 "implementation_evidence": value})


def test_upload_attach_and_download_are_stored_by_hash_and_audited(engine, people, store):
    """R-WF-30 R-WF-31: an upload is stored once under its SHA-256 and audited with the
    person; the step records the file in its update event; a download by someone who may
    see the record returns the same bytes and is audited with their name."""
    n = capa_at_implementation(engine, people)
    value = attachments.upload(engine, people["owner"], "../../SOP-12 rev4.pdf", PDF,
                               field="implementation_evidence", number=n)
    assert value == {"sha256": hashlib.sha256(PDF).hexdigest(), "name": "SOP-12 rev4.pdf",
                     "size": len(PDF), "type": "application/pdf"}
    (path,) = stored_files(store)
    assert path.name == value["sha256"] and path.read_bytes() == PDF
    attachments.upload(engine, people["owner"], "again.pdf", PDF)  # same bytes: stored once
    assert len(stored_files(store)) == 1
    implemented_with(engine, people, n, value)
    assert engine.get(n).data["implementation_evidence"] == value
    (up, _) = events(engine, "attachment_uploaded")
    assert (up.actor_name, up.changes["sha256"], up.changes["number"]) == (
        "Olga Owner", value["sha256"], n)
    with engine.reader() as s:
        upd = s.execute(select(AuditEvent).where(
            AuditEvent.action == "update", AuditEvent.transition == "complete_implementation")
        ).scalar_one()
    assert upd.changes["implementation_evidence"] == [None, value]

    got, data = attachments.download(engine, n, value["sha256"], people["qa"])
    assert data == PDF and got == value
    (down,) = events(engine, "attachment_downloaded")
    assert (down.actor_name, down.changes["number"], down.changes["sha256"]) == (
        "Quinn QA", n, value["sha256"])


def test_download_follows_visibility_and_only_files_the_record_holds(engine, people, store,
                                                                     make_user):
    """R-WF-31 R-P11-10d-2: someone who may not see the record gets "not found" (like a
    record that does not exist), and a file another record holds is not handed out through
    this one; nothing is audited for a refused download."""
    n = capa_at_implementation(engine, people)
    value = attachments.upload(engine, people["owner"], "e.pdf", PDF)
    implemented_with(engine, people, n, value)
    other = engine.start("capa", people["emp"], {"title": "Other", "description": "d"}).number
    outsider = make_user("ivy", "isms", full_name="Ivy Isms")
    with pytest.raises(RecordNotFound):
        attachments.download(engine, n, value["sha256"], outsider)
    with pytest.raises(RecordNotFound):
        attachments.download(engine, other, value["sha256"], people["qa"])
    assert events(engine, "attachment_downloaded") == []


def test_wrong_type_and_oversize_are_refused_and_nothing_is_stored(engine, people, store,
                                                                   monkeypatch):
    """R-WF-30: a file's type is read from its content (a program named .pdf is refused;
    HTML is refused); a file over QMS_ATTACHMENT_MAX_BYTES is refused; nothing is stored
    and no upload is audited."""
    exe = b"MZ\x90\x00\x03" + b"\x00" * 300
    with pytest.raises(AttachmentTypeRefused, match="read from its content"):
        attachments.upload(engine, people["owner"], "report.pdf", exe)
    with pytest.raises(AttachmentTypeRefused):
        attachments.upload(engine, people["owner"], "page.txt",
                           b"<!DOCTYPE html><html><script>alert(1)</script></html>")
    monkeypatch.setenv("QMS_ATTACHMENT_MAX_BYTES", "100")
    with pytest.raises(AttachmentTooLarge, match="up to 100 bytes"):
        attachments.upload(engine, people["owner"], "big.png", PNG + b"\x00" * 100)
    assert stored_files(store) == []
    assert events(engine, "attachment_uploaded") == []


def test_a_file_value_naming_no_stored_file_is_refused(engine, people, store):
    """R-WF-30: a step cannot attach a file that was never uploaded (a made-up hash)."""
    n = capa_at_implementation(engine, people)
    fake = {"sha256": "ab" * 32, "name": "x.pdf", "size": 10, "type": "application/pdf"}
    with pytest.raises(ValidationFailed, match="no uploaded file x.pdf"):
        implemented_with(engine, people, n, fake)
    with pytest.raises(ValidationFailed, match="must be an uploaded file"):
        implemented_with(engine, people, n, {"sha256": "ab" * 32})


def verified(engine, people, store) -> tuple[str, dict]:
    n = capa_at_implementation(engine, people)
    value = attachments.upload(engine, people["owner"], "evidence.png", PNG)
    implemented_with(engine, people, n, value)
    engine.fire(n, "verify", people["qa2"], {"verification_evidence": "checked the photo"},
                signature=sign(people["qa2"]))
    return n, value


def _verify_sig(engine, n) -> int:
    with engine.reader() as s:
        rec = engine.get(n, session=s)
        return next(x.id for x in records.signatures(s, rec) if x.meaning == "Verified")


def _problems(engine) -> list:
    with engine.reader() as s:
        return integrity.verify(s, engine.signing_key).problems


def test_a_file_replaced_on_disk_after_signing_is_detected_and_supersedes(engine, people,
                                                                         store):
    """R-WF-32 R-P11-70-2: replacing the stored bytes of a signed attachment is named by
    verify-audit, marks the signature that locked it superseded (record page, JSON copy),
    and the file is no longer handed out."""
    n, value = verified(engine, people, store)
    assert _problems(engine) == []
    with engine.reader() as s:
        assert records.superseded(s, engine.get(n, session=s)) == frozenset()
    path = blobs.LocalBlobStore(store).path(value["sha256"])
    path.chmod(0o640)
    path.write_bytes(PNG.replace(b"\x00\x00\x00\x01", b"\x00\x00\x00\x02", 1))
    found = [p for p in _problems(engine) if p.kind == "attachment"]
    assert len(found) == 1 and "no longer matches its SHA-256" in found[0].message
    assert n in found[0].message and "evidence.png" in found[0].message
    sig = _verify_sig(engine, n)
    with engine.reader() as s:
        rec = engine.get(n, session=s)
        assert sig in records.superseded(s, rec)
        page = records.record_page(s, engine, n, people["qa"])
        assert sig in page.superseded and value["sha256"] in page.damaged
        doc = copies.record_copy(s, engine.registry, rec)
    assert {x["id"]: x["status"] for x in doc["signatures"]}[sig] == "superseded"
    with pytest.raises(AttachmentDamaged):
        attachments.download(engine, n, value["sha256"], people["qa"])
    path.unlink()
    assert "missing" in next(p.message for p in _problems(engine) if p.kind == "attachment")


def test_the_record_page_hashes_an_unchanged_file_once_and_a_changed_one_again(
        engine, people, store, monkeypatch):
    """R-PERF-67 R-WF-32: the record page reads and hashes a stored attachment again only
    when the file changed on disk since it last hashed right in this process (inode, size,
    modification and change time); one changed in place with the same size and its
    modification time set back is hashed again and named. A download hands out the bytes
    it checked (one read); verify-audit hashes every time."""
    n, value = verified(engine, people, store)
    path = blobs.LocalBlobStore(store).path(value["sha256"])
    time.sleep(max(0.0, (path.stat().st_ctime_ns + blobs.SETTLED_NS - time.time_ns()) / 1e9)
               + 0.05)  # a file changed within the last second is hashed every time
    reads: list[str] = []
    get = blobs.LocalBlobStore.get
    monkeypatch.setattr(blobs.LocalBlobStore, "get",
                        lambda self, sha: reads.append(sha) or get(self, sha))

    def page_damaged() -> dict:
        with engine.reader() as s:
            return records.record_page(s, engine, n, people["qa"]).damaged

    assert page_damaged() == {}
    first = len(reads)  # 1, or 0 when it hashed right earlier in this process
    assert first <= 1
    assert page_damaged() == {} and page_damaged() == {} and len(reads) == first
    attachments.download(engine, n, value["sha256"], people["qa"])
    assert len(reads) == first + 1  # the download reads once and hands out what it checked
    assert _problems(engine) == [] and len(reads) == first + 2  # verify-audit always hashes
    stat = path.stat()
    path.chmod(0o640)
    path.write_bytes(PNG.replace(b"\x00\x00\x00\x01", b"\x00\x00\x00\x02", 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    assert path.stat().st_size == stat.st_size
    assert "no longer matches its SHA-256" in page_damaged()[value["sha256"]]
    assert "no longer matches its SHA-256" in page_damaged()[value["sha256"]]
    assert len(reads) == first + 4  # a damaged file is hashed on every view


def test_a_file_swapped_in_the_record_row_after_signing_is_detected(engine, people, store):
    """R-WF-32 R-P11-70-2: pointing the signed record at another stored file behind the
    application's back breaks the record's seal (verify-audit) and supersedes the
    signature that locked the file."""
    n, value = verified(engine, people, store)
    other = attachments.upload(engine, people["owner"], "other.pdf", PDF)
    with engine.unit() as s:
        rec = s.execute(select(Record).where(Record.number == n)).scalar_one()
        data = {**rec.data, "implementation_evidence": other}
        s.execute(update(Record).where(Record.id == rec.id).values(data=data))
    found = [p.message for p in _problems(engine) if p.kind == "record"]
    assert any("does not match its seal" in m for m in found), found
    assert any("differs from its audit trail (fields implementation_evidence)" in m
               for m in found), found
    sig = _verify_sig(engine, n)
    with engine.reader() as s:
        assert sig in records.superseded(s, engine.get(n, session=s))


def test_a_replaced_file_stays_downloadable_from_the_trail(engine, people, store):
    """R-WF-31: a file replaced by a later step (with a reason) stays downloadable, since
    the audit trail names it as the old value; the count of stored files is by content."""
    n = capa_at_implementation(engine, people)
    first = attachments.upload(engine, people["owner"], "v1.pdf", PDF)
    implemented_with(engine, people, n, first)
    with engine.reader() as s:
        assert set(attachments.held(s, engine.get(n, session=s))) == {first["sha256"]}
        assert s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "attachment_uploaded")).scalar_one() == 1
    assert attachments.download(engine, n, first["sha256"], people["owner"])[1] == PDF
