"""The management review's report as PDF: the inputs frozen at opening (KPI values with charts
of this period against the one before, open high risks, audit results, earlier actions) and
the review's outcome (meeting, minutes, decisions, actions, signatures).

Drawn only from the record's own content (the snapshot the signatures cover) with ReportLab
and the embedded fonts of :mod:`workflow.pdffonts` (as the true copy, queries/copy_pdf.py);
charts by matplotlib's object API (no pyplot global state, safe in a web worker).
"""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from workflow import clock, pdffonts
from workflow.engine.core import Engine
from workflow.errors import WorkflowError
from workflow.queries.records import signatures, visible_record

#: KPI units charted together (percent on one axis; counts and days on another)
CHARTS = (("percent", "Rates (%)", 100.0), ("days", "Durations (days)", 1.0),
          ("count", "Counts", 1.0))
#: KPIs per chart (those with a value in either period, in the snapshot's order)
MAX_BARS = 16


def _num(v: Any) -> float | None:
    try:
        return float(Decimal(str(v))) if v not in (None, "") else None
    except InvalidOperation:
        return None


def kpi_chart(rows: list[dict[str, Any]], show: str, title: str, scale: float
              ) -> bytes | None:
    """A PNG: one pair of horizontal bars (this period, the period before) per KPI of unit
    ``show``; None when the snapshot has no value of that unit."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    picked = [r for r in rows if r.get("show", "count") == show
              and ((_num(r.get("value_num")) or 0) or (_num(r.get("previous_num")) or 0))]
    if not picked:
        return None
    picked = picked[:MAX_BARS]
    labels = [str(r.get("label", r.get("key")))[:48] for r in picked]
    now = [(_num(r.get("value_num")) or 0.0) * scale for r in picked]
    before = [(_num(r.get("previous_num")) or 0.0) * scale for r in picked]
    height = 1.0 + 0.22 * len(picked)
    fig = Figure(figsize=(7.2, height), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = list(range(len(picked)))
    ax.barh([i + 0.2 for i in y], before, height=0.38, color="#b8c4d6", label="Previous period")
    ax.barh([i - 0.2 for i in y], now, height=0.38, color="#1f4e79", label="This period")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(title, fontsize=9, loc="left")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", linewidth=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def review_report(session: Session, engine: Engine, number: str, viewer: str) -> bytes:
    """The report of review ``number`` as ``viewer`` may see it (RecordNotFound otherwise);
    WorkflowError when the record holds no frozen KPI snapshot."""
    rec, d = visible_record(session, engine, number, viewer)
    data = rec.data
    if "kpi_snapshot" not in data:
        raise WorkflowError(f"{number} holds no frozen review inputs (no KPI snapshot)")
    sigs = [(s.signer_name, s.signed_at, s.meaning,
             " and ".join(d.roles.get(r, r) for r in s.signer_role.split("+")))
            for s in signatures(session, rec)]
    return render(number, rec.title, d.title, d.states[rec.state].label, data, sigs,
                  clock.now())


def render(number: str, title: str, workflow_title: str, state: str, data: dict[str, Any],
           sigs: list[tuple[str, datetime, str, str]], made: datetime) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    st = pdffonts.styles()
    small = pdffonts.paragraph_style("small", st["BodyText"], fontSize=8, leading=10)
    head = pdffonts.paragraph_style("head", small, fontName=pdffonts.BOLD)
    width = A4[0] - 30 * mm

    def p(text: Any, style: Any = small) -> Paragraph:
        base = pdffonts.BOLD if style is head else pdffonts.REGULAR
        return Paragraph(pdffonts.markup("" if text is None else str(text), base), style)

    def table(header: list[str], rows: list[list[Any]], widths: list[float]) -> Table:
        body = [[p(h, head) for h in header]] + [[p(c) for c in r] for r in rows]
        if not rows:
            body.append([p("none")] + [p("") for _ in header[1:]])
        t = Table(body, colWidths=[w * width for w in widths], repeatRows=1)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                               ("FONT", (0, 0), (-1, -1), pdffonts.REGULAR),
                               ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef5"))]))
        return t

    kpis = data.get("kpi_snapshot") or []
    story: list[Any] = [
        p(f"{number}: {title}", st["Title"]),
        p(f"{workflow_title} · period {data.get('period_from')} to {data.get('period_to')} · "
          f"state: {state}"),
        p(f"Inputs frozen at {str(data.get('snapshot_taken_at', ''))[:19].replace('T', ' ')} "
          "UTC, when the review was opened. They are part of the record's signed content: "
          "later changes to the records they were taken from do not alter them."),
        Spacer(1, 3 * mm), p("Key performance indicators", st["Heading2"])]
    charts = [png for png in (kpi_chart(kpis, show, caption, scale)
                              for show, caption, scale in CHARTS) if png]
    for png in charts:
        img = Image(io.BytesIO(png))
        ratio = min(width / img.imageWidth, 110 * mm / img.imageHeight)
        img.drawWidth, img.drawHeight = img.imageWidth * ratio, img.imageHeight * ratio
        story += [img, Spacer(1, 2 * mm)]
    if not charts:
        story.append(p("No KPI has a value in this period or the one before: nothing to chart."))
    story += [
        table(["KPI", "This period", "n/N", "Status", "Earlier periods", "Trend"],
              [[r.get("label"), r.get("value", "–"), r.get("n", ""), r.get("status", ""),
                r.get("history", r.get("previous", "–")), r.get("trend", "–")] for r in kpis],
              [0.32, 0.11, 0.1, 0.09, 0.3, 0.08]),
        p("Open high risks", st["Heading2"]),
        table(["Assessment", "Hazard", "Score", "Treatment", "Residual", "State"],
              [[r.get("record"), r.get("hazard"), r.get("score"), r.get("treatment", ""),
                r.get("residual", ""), r.get("state", "")] for r in data.get("high_risks") or []],
              [0.16, 0.4, 0.08, 0.12, 0.1, 0.14]),
        p("Audits closed in the period", st["Heading2"]),
        table(["Audit", "Title", "State"],
              [[r.get("record"), r.get("title"), r.get("state")]
               for r in data.get("audit_results") or []], [0.2, 0.6, 0.2]),
        p("Open actions of earlier reviews", st["Heading2"]),
        table(["Review", "Action", "Owner", "Due", "CAPA / change"],
              [[r.get("review"), r.get("action"), r.get("owner", ""), r.get("due", ""),
                r.get("link", "")] for r in data.get("previous_actions") or []],
              [0.16, 0.44, 0.14, 0.12, 0.14]),
        p("Review", st["Heading2"]),
        table(["", ""], [["Meeting date", data.get("meeting_date", "—")],
                         ["Attendees", ", ".join(data.get("attendees") or []) or "—"],
                         ["Minutes", data.get("minutes", "—")],
                         ["Decisions", data.get("decisions", "—")]], [0.2, 0.8]),
        p("Actions", st["Heading2"]),
        table(["Action", "Type", "Owner", "Due", "CAPA / change", "Done"],
              [[a.get("description"), a.get("type", ""), a.get("owner", ""), a.get("due", ""),
                a.get("capa") or a.get("change") or "", "yes" if a.get("done") else "no"]
               for a in data.get("actions") or []], [0.36, 0.1, 0.14, 0.12, 0.16, 0.12]),
        p("Electronic signatures", st["Heading2"]),
        table(["Printed name", "Date and time (UTC)", "Meaning", "Role"],
              [[n, f"{at:%Y-%m-%d %H:%M:%S}", m, r] for n, at, m, r in sigs],
              [0.3, 0.25, 0.2, 0.25]),
        Spacer(1, 3 * mm),
        p(f"Report made {made:%Y-%m-%d %H:%M:%S} UTC from the record's content. "
          "It is not a true copy; the true copy (with the audit trail) is the record's export."),
    ]
    buf = io.BytesIO()
    SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                      topMargin=15 * mm, bottomMargin=15 * mm, title=f"{number} report",
                      author="qms-workflow", initialFontName=pdffonts.REGULAR).build(story)
    return buf.getvalue()
