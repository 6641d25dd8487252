"""QR codes for the pages: a provisioning URI (TOTP enrolment) as an inline SVG."""

from __future__ import annotations

import io

import segno


def qr_svg(uri: str) -> str:
    """The provisioning URI as an inline SVG QR code (segno)."""
    buf = io.BytesIO()
    segno.make(uri, error="m").save(buf, kind="svg", scale=5, border=2,
                                    xmldecl=False, svgns=True)
    return buf.getvalue().decode()
