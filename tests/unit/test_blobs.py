"""Attachment checks and the local store (workflow/blobs.py), without a database."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from workflow import blobs
from workflow.config import Settings
from workflow.errors import AttachmentRefused, AttachmentTooLarge, AttachmentTypeRefused

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64


def _ooxml(folder: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr(f"{folder}/document.xml", "<x/>")
    return buf.getvalue()


@pytest.mark.parametrize(("data", "kind"), [
    (PDF, "application/pdf"),
    (PNG, "image/png"),
    (JPEG, "image/jpeg"),
    (_ooxml("word"), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (_ooxml("xl"), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("Messwert 5,2 µg; Łódź; 測試\n".encode(), "text/plain"),
    (b"MZ\x90\x00\x03" + b"\x00" * 300, "application/vnd.microsoft.portable-executable"),
    (b"<!DOCTYPE html><html><body>x</body></html>", "text/html"),
    (b"\x00\x01\x02\xff\xfe" * 20, "application/octet-stream"),
])
def test_type_is_read_from_the_content(data, kind):
    """R-WF-30: the type comes from the bytes (signatures, OOXML folders, UTF-8 text)."""
    assert blobs.media_type(data) == kind


def test_check_refuses_empty_oversize_and_unlisted_types_whatever_the_name():
    """R-WF-30: empty, too large and unlisted types are refused with a reason; the name
    does not decide the type; the file value names the SHA-256, a clean name, size, type."""
    s = Settings(attachment_max_bytes=100, attachment_types=("application/pdf",))
    with pytest.raises(AttachmentRefused, match="empty"):
        blobs.check(b"", "a.pdf", s)
    with pytest.raises(AttachmentTooLarge, match="101 bytes; files up to 100 bytes"):
        blobs.check(b"%PDF" + b"x" * 97, "a.pdf", s)
    with pytest.raises(AttachmentTypeRefused, match="image/png"):
        blobs.check(PNG, "looks-like.pdf", s)
    assert blobs.check(PDF, "C:\\scans\\..\\rep\x00ort.pdf", s) == {
        "sha256": hashlib.sha256(PDF).hexdigest(), "name": "rep_ort.pdf", "size": len(PDF),
        "type": "application/pdf"}


def test_local_store_is_content_addressed_and_refuses_bad_names(tmp_path):
    """R-WF-30 R-WF-32: stored under the hash, once; bytes that do not match the hash are
    refused; a path that is not a SHA-256 is refused; intact() notices a changed file."""
    store = blobs.LocalBlobStore(tmp_path)
    sha = hashlib.sha256(PDF).hexdigest()
    store.put(sha, PDF)
    store.put(sha, PDF)
    assert store.get(sha) == PDF and store.exists(sha)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [sha]
    with pytest.raises(ValueError):
        store.put(sha, PNG)
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")
    assert blobs.intact(store, sha, len(PDF)) is None
    path = store.path(sha)
    path.chmod(0o640)
    path.write_bytes(PDF + b" ")
    assert "no longer matches" in blobs.intact(store, sha)
    assert "missing" in blobs.intact(store, "0" * 64)


def test_attachment_store_hook_is_loaded_from_the_settings(tmp_path):
    """R-WF-30: QMS_ATTACHMENT_STORE=module:factory gives another store; a bad hook is a
    configuration error naming the variable."""
    s = Settings(instance_dir=tmp_path)
    assert isinstance(blobs.store(s), blobs.LocalBlobStore)
    assert blobs.store(s).root == tmp_path / "attachments"
    hooked = Settings(attachment_store="tests.unit.test_blobs:_memory_store")
    assert isinstance(blobs.store(hooked), _Memory)
    from workflow.errors import ConfigError

    with pytest.raises(ConfigError, match="QMS_ATTACHMENT_STORE"):
        blobs.store(Settings(attachment_store="no.such.module:x"))


class _Memory:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def put(self, sha256: str, data: bytes) -> None:
        self.files[sha256] = data

    def get(self, sha256: str) -> bytes:
        return self.files[sha256]

    def exists(self, sha256: str) -> bool:
        return sha256 in self.files


def _memory_store(settings: Settings) -> _Memory:
    return _Memory()
