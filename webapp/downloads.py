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

from flask import Response, current_app

from webapp.context import engine
from workflow import config
from workflow.queries import copies
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
