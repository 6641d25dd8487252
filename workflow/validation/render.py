"""Render the validation report model (workflow.validation.report.build_report) as HTML and PDF.

The PDF is drawn with ReportLab's Platypus in invariant mode (fixed creation date and document
ID), so the same report model always gives byte-identical files. Text is set in the embedded
Unicode fonts of :mod:`workflow.pdffonts` (the same as the true copies): names, paths and test
ids print as written, in any script.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TITLE = "Validation report: QMS workflow engine"
SIGN_ROLES = (("Prepared by (system owner / validation lead)", ""),
              ("Reviewed and approved by (Quality Assurance)", "Approved"))


def _iq_sections(r: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every IQ table, shared by HTML and PDF."""
    iq = r["iq"]
    p, py, dbf = iq["product"], iq["python"], iq["database"]
    dirty = {True: "yes (work tree differs from the commit)", False: "no", None: "unknown"}
    out = [
        ("Product and runtime", ["item", "value"], [
            ["product", f"{p['name']} {p['version']}"],
            ["git commit", p["commit"]],
            ["uncommitted changes", dirty[p.get("dirty")]],
            ["Python", f"{py['implementation']} {py['version']}"],
            ["interpreter", py["executable"]],
            ["platform", py["platform"]],
        ]),
        ("Database and schema", ["item", "value"], [
            ["database", dbf.get("url", "")],
            ["engine", f"{dbf.get('engine', '')} ({dbf.get('server_version', 'version unknown')})"],
            ["schema revision (database)", str(dbf.get("current_revision"))],
            ["schema revision (Alembic head of the code)", str(dbf.get("alembic_head"))],
            ["schema status", dbf.get("schema_status", "") + (f": {dbf['error']}"
                                                             if dbf.get("error") else "")],
        ]),
        ("Configuration in force (secrets masked)", ["setting", "value", "source"],
         [[c["name"], c["value"], c["source"]] for c in iq["configuration"]]),
        ("Shipped definitions: file checksums (SHA-256)", ["file", "sha256"],
         [[f["file"], f["sha256"]] for f in iq["definition_files"]]),
        ("Shipped definitions: canonical content hash (as published)", ["workflow", "sha256"],
         [[d["key"], d["content_hash"]] for d in iq["definition_hashes"]]),
        ("Migrations: file checksums (SHA-256)", ["file", "sha256"],
         [[f["file"], f["sha256"]] for f in iq["migration_files"]]),
    ]
    if "catalogue" in iq:
        out.append(("Requirements catalogue", ["file", "sha256"],
                    [[iq["catalogue"]["file"], iq["catalogue"]["sha256"]]]))
    out.append((f"Installed packages ({len(iq['packages'])})", ["package", "version"],
                [[pk["name"], pk["version"]] for pk in iq["packages"]]))
    return out


def _summary_rows(r: dict[str, Any]) -> list[list[str]]:
    s, iq = r["session"], r["iq"]
    rows = [["conclusion", r["conclusion"]],
            ["product", f"{iq['product']['name']} {iq['product']['version']}"],
            ["git commit", iq["product"]["commit"]],
            ["test run", f"{s.get('started', '?')} to {s.get('finished', '?')} "
                         f"({s.get('duration', '?')} s), exit status {s.get('exitstatus', '?')}"],
            ["whole suite", "yes" if s.get("full_suite") else "no (subset: coverage not checked)"],
            ["test environment", f"Python {s.get('python', '?')}, pytest {s.get('pytest', '?')}, "
                                 f"{s.get('database', '?')}, {s.get('platform', '?')}"],
            ["results file sha256", r.get("results_sha256", "")]]
    rows += [[f"tests {k}", str(v)] for k, v in r["test_totals"].items()]
    rows += [[k, str(v)] for k, v in r["requirement_totals"].items()]
    return rows


def _oq_rows(r: dict[str, Any]) -> list[list[str]]:
    """One row per requirement and test (so that long lists split across pages); the
    requirement's columns are filled on its first row only."""
    rows = []
    for row in r["rows"]:
        text = row["text"] + (f"\nNote: {row['note']}" if row["note"] else "")
        first = [row["id"], text, row["clause"], row["risk"],
                 row["status"] + (f" (#{row['issue']})" if row["issue"] else ""),
                 row["verdict"]]
        tests = [[t["nodeid"] + (" (via catalogue)" if t["via"] == "catalogue" else ""),
                  t["outcome"], f"{t['duration']:.3f}"] for t in row["tests"]] or [["-", "", ""]]
        for i, t in enumerate(tests):
            rows.append((first if i == 0 else [row["id"], "", "", "", "", ""]) + t)
    return rows


OQ_HEADER = ["ID", "requirement", "clause", "risk", "status", "verdict", "test",
             "outcome", "time (s)"]


# ------------------------------------------------------------------ HTML


def _table(header: list[str], rows: Iterable[list[str]], cls: str = "") -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def render_html(r: dict[str, Any]) -> str:
    e = html.escape
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(TITLE)}</title>",
        "<style>body{font-family:sans-serif;font-size:13px;margin:2em}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "th,td{border:1px solid #999;padding:3px 6px;vertical-align:top;text-align:left}"
        "td{white-space:pre-wrap}th{background:#eee}.sign td{height:3em;min-width:10em}"
        ".FAIL{color:#a00;font-weight:bold}.PASS{color:#060;font-weight:bold}"
        "@media print{h2{page-break-before:always}h2.first{page-break-before:auto}}</style>",
        "</head><body>",
        f"<h1>{e(TITLE)}</h1>",
        f'<h2 class="first">Summary</h2><p>Conclusion: <span class="{e(r["conclusion"])}">'
        f'{e(r["conclusion"])}</span></p>',
        _table(["item", "value"], _summary_rows(r)),
        "<h3>Deviations</h3>",
        "<ul>" + "".join(f"<li>{e(d)}</li>" for d in r["deviations"]) + "</ul>"
        if r["deviations"] else "<p>None.</p>",
        "<h3>Approval</h3><p>By signing, the reviewer confirms that the installation (IQ) and "
        "the operational tests (OQ) below were reviewed and that the system is fit for its "
        "intended use, subject to the deviations listed.</p>",
        _table(["role", "printed name", "signature", "date and time (UTC)", "meaning"],
               [[role, "", "", "", meaning] for role, meaning in SIGN_ROLES], "sign"),
        "<h2>Installation qualification (IQ)</h2>",
    ]
    for title, header, rows in _iq_sections(r):
        parts += [f"<h3>{e(title)}</h3>", _table(header, rows)]
    parts += ["<h2>Operational qualification (OQ): requirements, tests, results</h2>",
              _table(OQ_HEADER, _oq_rows(r)),
              f"<h2>All tests ({len(r['tests'])})</h2>",
              _table(["node id", "requirements", "outcome", "time (s)"],
                     [[t["nodeid"], " ".join(t.get("requirements", [])), t["outcome"],
                       f"{t.get('duration', 0.0):.3f}"] for t in r["tests"]]),
              "</body></html>"]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------ PDF


def _pdf_text(s: str, base: str | None = None) -> str:
    from workflow import pdffonts

    return pdffonts.markup(str(s), base or pdffonts.REGULAR)


def render_pdf(r: dict[str, Any], path: Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import (
        PageBreak,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    from workflow import pdffonts

    styles = pdffonts.styles()
    cell = ParagraphStyle("cell", parent=styles["BodyText"], fontSize=7, leading=8.5,
                          wordWrap="CJK")
    mono = ParagraphStyle("mono", parent=cell, fontName=pdffonts.MONO, fontSize=6.5, leading=8)
    head = ParagraphStyle("head", parent=cell, fontName=pdffonts.BOLD)
    base = {id(mono): pdffonts.MONO, id(head): pdffonts.BOLD}
    page = landscape(A4)
    width = page[0] - 24 * mm

    def table(header: list[str], rows: list[list[str]], widths: list[float],
              styles_: list[ParagraphStyle] | None = None, height: float = 0) -> Table:
        st = styles_ or [cell] * len(header)
        data = [[Paragraph(_pdf_text(h, pdffonts.BOLD), head) for h in header]]
        data += [[Paragraph(_pdf_text(c, base.get(id(st[i]))), st[i]) for i, c in enumerate(row)]
                 for row in rows]
        t = Table(data, colWidths=[w * width for w in widths], repeatRows=1,
                  rowHeights=None if not height else [None] + [height] * len(rows))
        t.setStyle(TableStyle([
            ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
            ("FONT", (0, 0), (-1, -1), pdffonts.REGULAR),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ]))
        return t

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        commit = r["iq"]["product"]["commit"][:12]
        pdffonts.draw_string(canvas, 12 * mm, 7 * mm, f"{TITLE} - commit {commit} - "
                                                      f"conclusion {r['conclusion']}", 7)
        pdffonts.draw_string(canvas, page[0] - 12 * mm, 7 * mm, f"page {doc.page}", 7,
                             right=True)
        canvas.restoreState()

    story: list[Any] = [Paragraph(_pdf_text(TITLE), styles["Title"]),
                        Paragraph("Summary", styles["Heading2"]),
                        table(["item", "value"], _summary_rows(r), [0.25, 0.75]),
                        Paragraph("Deviations", styles["Heading3"])]
    story += [Paragraph(_pdf_text("- " + d), cell) for d in r["deviations"]] or \
        [Paragraph("None.", cell)]
    story += [Paragraph("Approval", styles["Heading3"]),
              Paragraph(_pdf_text("By signing, the reviewer confirms that the installation (IQ) "
                                  "and the operational tests (OQ) below were reviewed and that "
                                  "the system is fit for its intended use, subject to the "
                                  "deviations listed."), cell),
              Spacer(1, 3 * mm),
              table(["role", "printed name", "signature", "date and time (UTC)", "meaning"],
                    [[role, "", "", "", meaning] for role, meaning in SIGN_ROLES],
                    [0.3, 0.2, 0.2, 0.18, 0.12], height=14 * mm),
              PageBreak(),
              Paragraph("Installation qualification (IQ)", styles["Heading2"])]
    for title, header, rows in _iq_sections(r):
        widths = {2: [0.3, 0.7], 3: [0.25, 0.55, 0.2]}[len(header)]
        story += [Paragraph(_pdf_text(title), styles["Heading3"]),
                  table(header, rows, widths, [cell] + [mono] * (len(header) - 1))]
    story += [PageBreak(),
              Paragraph("Operational qualification (OQ): requirements, tests, results",
                        styles["Heading2"]),
              table(OQ_HEADER, _oq_rows(r),
                    [0.07, 0.24, 0.08, 0.05, 0.07, 0.07, 0.32, 0.05, 0.05],
                    [cell] * 6 + [mono, cell, cell]),
              PageBreak(),
              Paragraph(_pdf_text(f"All tests ({len(r['tests'])})"), styles["Heading2"]),
              table(["node id", "requirements", "outcome", "time (s)"],
                    [[t["nodeid"], " ".join(t.get("requirements", [])), t["outcome"],
                      f"{t.get('duration', 0.0):.3f}"] for t in r["tests"]],
                    [0.55, 0.3, 0.08, 0.07], [mono, cell, cell, cell])]
    doc = SimpleDocTemplate(str(path), pagesize=page, leftMargin=12 * mm, rightMargin=12 * mm,
                            topMargin=12 * mm, bottomMargin=14 * mm, invariant=1,
                            initialFontName=pdffonts.REGULAR,
                            title=TITLE, author="qms validation-report",
                            subject=f"IQ/OQ, commit {r['iq']['product']['commit']}",
                            creator="qms-workflow")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)

