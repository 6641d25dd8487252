"""The human-readable true copy of a record as PDF (21 CFR 11.10(b), Annex 11 §8).

Drawn with ReportLab from the JSON copy (workflow/queries/copies.py), so both say the same:
fields with their labels, choice labels and printed names (lists as tables), each field
changed after its first entry flagged with the audit entries that changed it (R-A11-8-1),
every signature's manifestation, the state history, links, the whole audit trail and the
integrity values. Every page has a header and footer with the record number, "page x of y"
and the time the copy was made. Text is set in embedded Unicode fonts
(:mod:`workflow.pdffonts`): Latin, Greek, Cyrillic and CJK print as written.
"""

from __future__ import annotations

import io
from typing import Any

from workflow import pdffonts
from workflow.spec.fields import choice_label

CHANGED_NOTE = ("† changed after its first entry: the audit entries named beside the value "
                "changed or cleared a value already entered (see the audit trail below).")


def _signed_lines(doc: dict[str, Any]) -> list[str]:
    """What a signed PDF copy says about its signature and checkpoint."""
    integ = doc["integrity"]
    if "signed_by" not in integ:
        return []
    cp = integ.get("checkpoint")
    covered = (f"Covered by checkpoint {cp['file']} of {cp['created_at']} (sha256 "
               f"{cp['sha256']}), which saw this record's chain at #{cp['record_seq']} "
               f"{cp['record_head']}." if cp else
               "No checkpoint covered this record when it was copied (it is newer than the "
               "newest checkpoint).")
    return [covered, "This PDF is signed over its exact bytes with the system's Ed25519 "
                     "anchor key; the signature is the file <this file>.sig. Verify with "
                     "`qms verify-copy FILE --public-key KEY` or docs/inspector.md."]


def _t(iso: Any) -> str:
    """An ISO 8601 UTC time as a person reads it (``2026-03-02 10:00:00``); the columns and
    lines that show it say UTC."""
    if not isinstance(iso, str) or len(iso) < 19 or iso[10] != "T":
        return "—" if iso in (None, "") else str(iso)
    return iso[:10] + " " + iso[11:19] + ("" if iso.endswith(("+00:00", "Z")) else iso[19:])


def _short(v: Any) -> str:
    if v is None or v == "" or v == []:
        return "—"
    if isinstance(v, str):
        return v
    import json

    return json.dumps(v, ensure_ascii=False)


def _change_lines(e: dict[str, Any], labels: dict[str, Any]) -> str:
    """An audit event's changes as lines a person reads: ``Label: old → new``."""
    ch = e.get("changes")
    if not ch:
        return ""
    if e["action"] in ("create", "update") and isinstance(ch, dict):
        names, choices = labels.get("fields", {}), set(labels.get("choice_fields", ()))

        def shown(f: str, v: Any) -> str:
            if f in choices and isinstance(v, str) and v:
                return choice_label(v)
            if isinstance(v, dict) and {"sha256", "name"} <= set(v):
                return f"file {v['name']} (sha256 {str(v['sha256'])[:16]}…)"
            return _short(v)

        return "\n".join(f"{names.get(f, f)}: {shown(f, v[0])} → {shown(f, v[1])}"
                         if isinstance(v, list) and len(v) == 2 else f"{names.get(f, f)}: {_short(v)}"
                         for f, v in ch.items())
    if e["action"] == "sign" and isinstance(ch, dict) and isinstance(ch.get("signature"), dict):
        s = ch["signature"]
        roles = labels.get("roles", {})
        role = " and ".join(roles.get(r, r) for r in str(s.get("role") or "").split("+"))
        return f"signed: {s.get('meaning')} (as {role}), signature #{s.get('id')}"
    return _short(ch)


def record_pdf(doc: dict[str, Any]) -> bytes:
    """The PDF true copy of the JSON copy ``doc``."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    st = pdffonts.styles()
    small = pdffonts.paragraph_style("small", st["BodyText"], fontSize=7.5, leading=9.5)
    head = pdffonts.paragraph_style("head", small, fontName=pdffonts.BOLD)
    mono = pdffonts.paragraph_style("mono", small, fontName=pdffonts.MONO, fontSize=6.5)
    flag = pdffonts.paragraph_style("flag", small, textColor=colors.HexColor("#8a4b00"))
    rec, labels = doc["record"], doc.get("labels", {})
    number, made = rec["number"], doc["exported_at"]
    width = A4[0] - 30 * mm
    cell_font = ("FONT", (0, 0), (-1, -1), pdffonts.REGULAR)  # a table's own font (not Helvetica)

    def p(text: Any, style: Any = small) -> Paragraph:
        base = pdffonts.MONO if style is mono else (
            pdffonts.BOLD if style is head or style.fontName == pdffonts.BOLD else pdffonts.REGULAR)
        text = "" if text is None else str(text)
        if pdffonts.needs_cjk_wrap(text):  # lines may break between any two CJK characters
            style = pdffonts.paragraph_style(style.name + "-cjk", style, wordWrap="CJK")
        return Paragraph(pdffonts.markup(text, base), style)

    def grid(data: list[list[Any]], widths: list[float], header: bool = True) -> Table:
        t = Table(data, colWidths=[w * width for w in widths], repeatRows=1 if header else 0)
        style = [("GRID", (0, 0), (-1, -1), 0.3, colors.grey), cell_font,
                 ("VALIGN", (0, 0), (-1, -1), "TOP"),
                 ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3)]
        if header:
            style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef5")))
        t.setStyle(TableStyle(style))
        return t

    def table(header: list[str], rows: list[list[Any]], widths: list[float],
              styles: list[Any] | None = None) -> Table:
        cols = styles or [small] * len(header)
        return grid([[p(h, head) for h in header]] +
                    [[c if isinstance(c, Table | Paragraph) else p(c, cols[i])
                      for i, c in enumerate(r)] for r in rows], widths)

    def value_cell(f: dict[str, Any], share: float) -> Any:
        shown = f.get("display", f["value"])
        if isinstance(shown, dict) and "rows" in shown:
            n = max(1, len(shown["columns"]))
            inner = Table([[p(c, head) for c in shown["columns"]]] +
                          [[p(c) for c in row] for row in shown["rows"]],
                          colWidths=[share * width / n - 2] * n, repeatRows=1)
            inner.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.lightgrey), cell_font,
                                       ("VALIGN", (0, 0), (-1, -1), "TOP"),
                                       ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f3f5f8")),
                                       ("LEFTPADDING", (0, 0), (-1, -1), 2),
                                       ("RIGHTPADDING", (0, 0), (-1, -1), 2)]))
            return inner
        return p(_short(shown) if shown != "" else "—")

    def flag_cell(f: dict[str, Any]) -> Any:
        seqs = f.get("changed_after_first_entry") or []
        if not seqs:
            return p("")
        return p("† changed after first entry: audit " + ", ".join(f"#{s}" for s in seqs), flag)

    steps, roles = labels.get("steps", {}), labels.get("roles", {})
    initiator = rec.get("initiator") or {}
    any_changed = any(f.get("changed_after_first_entry") for f in doc["fields"])
    controlled = doc.get("controlled_document")
    story: list[Any] = [
        p(f"{number}: {rec['title']}", st["Title"]),
        *([grid([[p(f"{controlled['notice']}. Printed {_t(made)} UTC: document "
                    f"{controlled['number']} version {controlled['version']}, "
                    + ("the version in force then" if controlled["in_force"]
                       else f"not the version in force ({rec['state_label']})")
                    + "; check the system for the version in force before use.", head)]],
                [1.0], header=False)] if controlled else []),
        grid([[p(a, head), p(b)] for a, b in [
            ["Record", f"{number} ({rec['workflow_title']}, definition version "
                       f"{rec['definition_version']})"],
            ["State", f"{rec['state_label']}" + (f" — closed {_t(rec['closed_at'])} UTC ({rec['outcome']})"
                                                 if rec.get("closed_at") else "")],
            ["Raised by", f"{initiator.get('name') or '—'} on {_t(rec['created_at'])} UTC"],
            ["Due (original / current)", f"{_t(rec['due_original'])} / "
                                         f"{_t(rec['due_current'])} UTC"
             if rec.get("due_original") or rec.get("due_current") else "—"],
            ["Record version", str(rec["version"])],
            ["Copy made", f"{_t(made)} UTC"]]], [0.25, 0.75], header=False),
        Spacer(1, 3 * mm), p("Fields", st["Heading2"]),
        table(["Field", "Value", "Changes"],
              [[f["label"], value_cell(f, 0.55), flag_cell(f)] for f in doc["fields"]]
              or [["none", "", ""]], [0.22, 0.58, 0.2]),
        *([p(CHANGED_NOTE, flag)] if any_changed else []),
        p("Electronic signatures", st["Heading2"]),
        table(["Printed name", "Date and time (UTC)", "Meaning", "Role", "Step", "Status"],
              [[s["printed_name"], _t(s["signed_at_utc"]), s["meaning"],
                " and ".join(roles.get(r, r) for r in (s["role"] or "").split("+")),
                steps.get(s["transition"], s["transition"]),
                "SUPERSEDED: the content it covered changed since"
                if s.get("status") == "superseded" else "valid"]
               for s in doc["signatures"]] or [["none", "", "", "", "", ""]],
              [0.18, 0.2, 0.16, 0.14, 0.16, 0.16]),
        p("State history", st["Heading2"]),
        table(["Time (UTC)", "From", "To", "Step", "By", "Reason"],
              [[_t(h["at"]), h["from_label"] or "", h["to_label"],
                steps.get(h["transition"], h["transition"]) if h["transition"] else "Start",
                h["actor"], h["reason"] or ""] for h in doc["state_history"]],
              [0.2, 0.15, 0.15, 0.16, 0.16, 0.18]),
        p("Linked records", st["Heading2"]),
        table(["Link", "Record", "Title", "State"],
              [[f"{x['kind'].replace('_', ' ')} ({x['direction']})", x["number"], x["title"],
                x["state"]] for x in doc["links"]] or [["none", "", "", ""]],
              [0.22, 0.2, 0.43, 0.15]),
        p("Audit trail", st["Heading2"]),
        table(["#", "Time (UTC)", "By", "Action", "Changes", "Reason", "Hash"],
              [[e["seq"], _t(e["at"]), e["actor_name"],
                e["action"] + (f": {steps.get(e['transition'], e['transition'])}"
                               if e.get("transition") else ""),
                _change_lines(e, labels), e["reason"] or "", e["hash"][:16]]
               for e in doc["audit_trail"]], [0.04, 0.15, 0.13, 0.13, 0.3, 0.13, 0.12],
              [small] * 6 + [mono]),
        p("Integrity", st["Heading2"]),
        p(f"Chain {doc['integrity']['chain']} head #{doc['integrity']['chain_head_seq']} "
          f"{doc['integrity']['chain_head_hash']}; record seal {doc['integrity']['seal']}; "
          f"definition sha256 {doc['integrity']['definition_hash']}. "
          f"{doc['integrity']['note']}.", mono),
        *[p(x) for x in _signed_lines(doc)],
    ]

    class _Pages(Canvas):
        """Draws the header and footer once the page count is known ("page x of y")."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 (ReportLab's name)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._chrome(total)
                super().showPage()
            super().save()

        def _chrome(self, total: int) -> None:
            w, h = A4
            self.saveState()
            self.setStrokeColor(colors.grey)
            self.setLineWidth(0.3)
            pdffonts.draw_string(self, 15 * mm, h - 10 * mm, f"{number} — true copy" + (
                f" — {controlled['notice'].upper()}" if controlled else ""), 7.5, pdffonts.BOLD)
            pdffonts.draw_string(self, w - 15 * mm, h - 10 * mm, f"copy made {_t(made)} UTC", 7.5,
                                 right=True)
            self.line(15 * mm, h - 11.5 * mm, w - 15 * mm, h - 11.5 * mm)
            self.line(15 * mm, 11.5 * mm, w - 15 * mm, 11.5 * mm)
            pdffonts.draw_string(self, 15 * mm, 8 * mm, f"{number} · {rec['workflow_title']} · "
                                 f"record version {rec['version']}", 7.5)
            pdffonts.draw_string(self, w - 15 * mm, 8 * mm,
                                 f"page {self._pageNumber} of {total}", 7.5, right=True)
            self.restoreState()

    buf = io.BytesIO()
    SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                      topMargin=16 * mm, bottomMargin=16 * mm,
                      title=f"{number} true copy", author="qms-workflow",
                      # the page's initial font too (ReportLab's Helvetica is not embedded)
                      initialFontName=pdffonts.REGULAR,
                      subject=f"True copy of {number} made {made} UTC").build(
        story, canvasmaker=_Pages)
    return buf.getvalue()
