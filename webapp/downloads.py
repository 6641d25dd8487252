"""Files the web UI and the API hand out: true copies of a record (PDF, JSON, PDF with its
signature as ZIP) and, later, attachments. Every one is made by a command that audits it
with the person's name, and is sent as a download, never rendered in the app's origin:
``Content-Disposition: attachment``, ``X-Content-Type-Options: nosniff`` and a Content
Security Policy that allows nothing (a sandboxed, script-free document even if opened)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

from flask import Response, current_app, request
from werkzeug.datastructures import FileStorage

from webapp.context import engine, read_session
from workflow import config
from workflow.errors import AttachmentRefused
from workflow.queries import attachments, copies, records
from workflow.signatures.keys import key_provider

#: the Content Security Policy of every download
DOWNLOAD_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"
COPY_FORMATS = ("pdf", "json", "zip")


def settings() -> config.Settings:
    return current_app.config.get("QMS_SETTINGS") or config.settings()


def attachment(body: bytes, filename: str, mimetype: str, **headers: str) -> Response:
    """``body`` as a download named ``filename`` (never shown inline)."""
    resp = Response(body, mimetype=mimetype)
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    from urllib.parse import quote

    resp.headers["Content-Disposition"] = (f'attachment; filename="{ascii_name}"; '
                                           f"filename*=UTF-8''{quote(filename)}")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = DOWNLOAD_CSP
    resp.headers["Cache-Control"] = "no-store"
    for k, v in headers.items():
        resp.headers[k.replace("_", "-")] = v
    return resp


def true_copy(number: str, fmt: str, username: str, reason: str) -> Response:
    """The signed true copy of ``number`` as ``username`` downloads it (RecordNotFound when
    they may not see it; the export is audited with their name)."""
    s = settings()
    # who may not see the record learns nothing else (not even a server key problem)
    records.visible_record(read_session(), engine(), number, username)
    anchor = key_provider(s).anchor_keys()
    doc = copies.export(engine(), number, "pdf" if fmt == "zip" else fmt, reason,
                        actor=username, anchor=anchor, checkpoint_dir=s.checkpoint_path,
                        visible_only=True)
    num = doc["record"]["number"]
    if fmt == "json":
        body = json.dumps(doc, indent=1, ensure_ascii=False).encode()
        return attachment(body + b"\n", f"{num}-true-copy.json", "application/json")
    name = f"{num}-true-copy.pdf"
    pdf = copies.record_pdf(doc)
    sig = json.dumps(copies.sign_pdf(pdf, doc, anchor, name), indent=1).encode() + b"\n"
    if fmt == "pdf":
        # the signature over the PDF's bytes rides along (the ZIP holds it as a file)
        return attachment(pdf, name, "application/pdf",
                          X_QMS_Copy_Signature=base64.b64encode(sig).decode())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, pdf)
        z.writestr(name + ".sig", sig)
    return attachment(buf.getvalue(), f"{num}-true-copy.zip", "application/zip")


def is_download(resp: Any) -> bool:
    return isinstance(resp, Response) and resp.headers.get("Content-Security-Policy") == DOWNLOAD_CSP


# --------------------------------------------------------------------------- attachments


def allow_uploads() -> None:
    """Let this request's body carry a file up to QMS_ATTACHMENT_MAX_BYTES (the app's limit
    for every other request stays as it is); call before the form is read."""
    request.max_content_length = max(current_app.config.get("MAX_CONTENT_LENGTH") or 0,
                                     settings().attachment_max_bytes + 1024 * 1024)


def attach_uploads(data: dict[str, Any], username: str, number: str | None = None) -> None:
    """Store each uploaded file in ``data`` (a FileStorage from webapp/forms.posted) and put
    its file value in its place (AttachmentRefused: nothing of that file is stored)."""
    limit = settings().attachment_max_bytes
    for name, value in list(data.items()):
        if isinstance(value, FileStorage):
            raw = value.stream.read(limit + 1)  # one byte more tells "too large"
            try:
                data[name] = attachments.upload(engine(), username, value.filename or "file",
                                                raw, field=name, number=number)
            except AttachmentRefused as exc:
                exc.field = name  # type: ignore[attr-defined]  (the form marks the field)
                raise


def attachment_file(number: str, sha256: str, username: str) -> Response:
    """The attached file as a download (audited; RecordNotFound when the person may not see
    the record or it holds no such file; AttachmentDamaged when the stored bytes changed)."""
    value, data = attachments.download(engine(), number, sha256, username)
    return attachment(data, value["name"], value["type"], X_QMS_SHA256=value["sha256"])
