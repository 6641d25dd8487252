"""An SVG diagram of a workflow definition's states and transitions, drawn in Python from the
definition itself (no external binary, no script), so the picture a reviewer approves is the
definition being approved.

Layout: states in rows by their distance from the initial state (breadth-first layers),
final states in the last row; a transition to the next row curves down between the rows,
one that skips rows takes a lane on the right, one going back (or within a row) a lane on
the left, each transition its own lane. Signature gates are drawn thick and dashed with a pen mark
and their meaning; final states have a double border (done green, void grey).
Only presentation attributes are used (no ``style`` attribute or element): the pages' CSP
allows no inline styles.
"""

from __future__ import annotations

from collections import deque
from html import escape

from workflow.spec.model import WorkflowDefinition

BOX_W, BOX_H = 180, 46
COL_W, ROW_H = 250, 104
PAD = 24
LANE = 16  # spacing of the side lanes for transitions that skip rows or go back
LABEL_ROOM = 200
FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"

INK, MUTED, BRAND = "#1f2937", "#6b7280", "#1d5fa8"
SIG = "#9a3412"


def _layers(d: WorkflowDefinition) -> dict[str, int]:
    layer = {d.initial_state: 0}
    todo = deque([d.initial_state])
    while todo:
        cur = todo.popleft()
        for t in d.transitions_from(cur):
            if t.dest not in layer:
                layer[t.dest] = layer[cur] + 1
                todo.append(t.dest)
    last = max(layer.values(), default=0)
    for name in d.states:
        layer.setdefault(name, last + 1)  # unreachable (the validator refuses those)
    nonfinal = [v for n, v in layer.items() if not d.states[n].final]
    final_col = max(nonfinal, default=0) + 1
    for name, s in d.states.items():
        if s.final:
            layer[name] = final_col
    return layer


def _text_w(text: str, size: float = 12) -> float:
    return len(text) * size * 0.56


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def render_svg(d: WorkflowDefinition, title: str | None = None, *,
               current: str | None = None,
               taken: frozenset[tuple[str, str]] = frozenset(),
               visited: frozenset[str] = frozenset()) -> str:
    """The diagram; for a record, ``current`` (its state) is drawn with a thick blue border,
    the ``visited`` states tinted and the ``taken`` (source state, transition) steps in blue
    (the record page also lists the path as text: the picture is not the only way to read
    it)."""
    layer = _layers(d)
    rows_of: dict[int, list[str]] = {}
    for name in d.states:  # definition order within a row
        rows_of.setdefault(layer[name], []).append(name)
    widest = max(len(v) for v in rows_of.values())
    edges = [(t, src) for t in d.transitions.values() for src in t.sources]
    skips = [(t, src) for t, src in edges if layer[t.dest] > layer[src] + 1]
    backs = [(t, src) for t, src in edges if layer[t.dest] <= layer[src]]
    left = PAD + LANE * len(backs) + LABEL_ROOM
    pos: dict[str, tuple[float, float]] = {}
    for r, names in rows_of.items():
        offset = (widest - len(names)) * COL_W / 2
        for c, name in enumerate(names):
            pos[name] = (left + offset + c * COL_W, PAD + 50 + r * ROW_H)
    right = left + (widest - 1) * COL_W + BOX_W
    width = right + LANE * len(skips) + LABEL_ROOM + PAD
    height = PAD + 50 + (max(rows_of) + 1) * ROW_H + 20

    out: list[str] = []
    heading = title or f"{d.title} ({d.key})"
    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" class="wf-diagram" role="img" '
               f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
               f'height="{height:.0f}" font-family="{FONT}" font-size="12">')
    where = (f"; current state {d.states[current].label}" if current in d.states else "")
    out.append(f"<title>{escape(heading)}: {len(d.states)} states, "
               f"{len(d.transitions)} transitions{escape(where)}</title>")
    out.append('<defs>'
               f'<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
               f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
               f'fill="{MUTED}"/></marker>'
               f'<marker id="arrow-sig" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
               f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
               f'fill="{SIG}"/></marker>'
               f'<marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
               f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
               f'fill="{BRAND}"/></marker></defs>')
    out.append(f'<text x="{PAD}" y="{PAD}" font-size="14" font-weight="700" fill="{INK}">'
               f"{escape(heading)}</text>")

    # transitions first (under the boxes), labels last (over everything)
    labels: list[str] = []
    pair_count: dict[tuple[str, str], int] = {}
    for t, src in edges:
        k = pair_count[(src, t.dest)] = pair_count.get((src, t.dest), 0) + 1
        sx, sy = pos[src]
        dx, dy = pos[t.dest]
        sig = t.signature is not None
        colour = SIG if sig else MUTED
        extra = ' stroke-width="2.4" stroke-dasharray="7 4"' if sig else ' stroke-width="1.4"'
        marker = "url(#arrow-sig)" if sig else "url(#arrow)"
        anchor = "middle"
        if (t, src) in skips:  # past the rows between: a lane on the right
            lane = right + LANE * (skips.index((t, src)) + 1)
            x1, y1 = sx + BOX_W, sy + BOX_H / 2
            x2, y2 = dx + BOX_W, dy + BOX_H / 2
            path = f"M{x1:.1f},{y1:.1f} C{lane:.1f},{y1:.1f} {lane:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
            lx, ly, anchor = lane - 0.25 * (lane - max(x1, x2)) + 4, (y1 + y2) / 2, "start"
        elif (t, src) in backs:  # back (or within a row): a lane on the left
            lane = left - LANE * (backs.index((t, src)) + 1)
            x1, y1 = sx, sy + BOX_H / 2 + 6
            x2, y2 = dx, dy + BOX_H / 2 - 6
            path = f"M{x1:.1f},{y1:.1f} C{lane:.1f},{y1:.1f} {lane:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
            lx, ly, anchor = lane + 0.25 * (min(x1, x2) - lane) - 4, (y1 + y2) / 2, "end"
        else:  # to the next row
            spread = (k - 1) * 14
            x1, y1 = sx + BOX_W / 2 + spread, sy + BOX_H
            x2, y2 = dx + BOX_W / 2 + spread, dy
            my = (y1 + y2) / 2
            path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{my:.1f} {x2:.1f},{my:.1f} {x2:.1f},{y2:.1f}"
            lx, ly = (x1 + x2) / 2, my - 2
        cls = "wf-edge wf-sig" if sig else "wf-edge"
        if (src, t.name) in taken:  # a step this record took: blue and thick
            colour, marker, cls = BRAND, "url(#arrow-taken)", cls + " wf-taken"
            extra = ' stroke-width="3.2"' + (' stroke-dasharray="7 4"' if sig else "")
        out.append(f'<path class="{cls}" data-transition="{escape(t.name)}" d="{path}" '
                   f'fill="none" stroke="{colour}"{extra} marker-end="{marker}"/>')
        text = _clip(t.label, 34)
        if sig:
            text = f"✎ {text}"
        sub = ""
        if sig:
            assert t.signature is not None
            q = f" ×{t.signature.quorum}" if t.signature.quorum > 1 else ""
            # a role of roles_when signs only when its condition holds: "qa?", "×1-2"
            maybe = {r for r, _ in t.signature.roles_when}
            if maybe:
                q = f" ×{t.signature.quorum - len(maybe)}-{t.signature.quorum}"
            who = ", ".join(r + ("?" if r in maybe else "") for r in t.signature.roles)
            sub = _clip(f"signed: {t.signature.meaning}{q} ({who})", 44)
        bold = ' font-weight="600"' if sig else ""
        w = max(_text_w(text), _text_w(sub, 10.5)) + 10
        h = 30 if sub else 17
        rx = {"middle": lx - w / 2, "start": lx - 5, "end": lx - w + 5}[anchor]
        labels.append(
            f'<g class="wf-label" data-transition="{escape(t.name)}">'
            f'<rect x="{rx:.1f}" y="{ly - 12:.1f}" width="{w:.1f}" height="{h}" '
            f'rx="4" fill="#ffffff" fill-opacity="0.92" stroke="{colour if sig else "none"}"'
            f' stroke-width="0.8"/>'
            f'<text x="{lx:.1f}" y="{ly + 1:.1f}" text-anchor="{anchor}" '
            f'fill="{SIG if sig else INK}"{bold}>{escape(text)}</text>'
            + (f'<text x="{lx:.1f}" y="{ly + 14:.1f}" text-anchor="{anchor}" font-size="10.5" '
               f'fill="{SIG}">{escape(sub)}</text>' if sub else "")
            + f"<title>{escape(t.name)}: {escape(t.label)} (roles: "
              f"{escape(', '.join(t.roles))})</title></g>")

    for name, s in d.states.items():
        x, y = pos[name]
        if s.final:
            done = s.outcome == "done"
            fill, stroke = ("#ecf8f0", "#15803d") if done else ("#f3f4f6", "#6b7280")
            cls = f"wf-state wf-final wf-{s.outcome}"
        elif s.initial:
            fill, stroke, cls = "#e6f0fa", BRAND, "wf-state wf-initial"
        else:
            fill, stroke, cls = "#ffffff", "#94a3b8", "wf-state"
        width_ = 2.2 if s.initial else 1.5
        if name in visited:
            fill, cls = "#dbe9f8", cls + " wf-visited"
        if name == current:
            stroke, width_, cls = BRAND, 4.0, cls + " wf-current"
        out.append(f'<g class="{cls}" data-state="{escape(name)}">')
        out.append(f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="10" '
                   f'fill="{fill}" stroke="{stroke}" stroke-width="{width_}"/>')
        if s.final:
            out.append(f'<rect x="{x + 4}" y="{y + 4}" width="{BOX_W - 8}" height="{BOX_H - 8}" '
                       f'rx="7" fill="none" stroke="{stroke}" stroke-width="1"/>')
        out.append(f'<text x="{x + BOX_W / 2}" y="{y + 20}" text-anchor="middle" '
                   f'font-weight="700" fill="{INK}">{escape(_clip(s.label, 24))}</text>')
        note = (f"final: {s.outcome}" if s.final else
                ", ".join(d.roles.get(o, o) for o in s.owners) or "no task")
        if s.initial:
            note = "start · " + note
        if name == current:
            note = "▶ current state"
        out.append(f'<text x="{x + BOX_W / 2}" y="{y + 36}" text-anchor="middle" '
                   f'font-size="10.5" fill="{MUTED}">{escape(_clip(note, 30))}</text>')
        out.append(f"<title>{escape(name)}</title></g>")
        if s.initial:
            out.append(f'<circle cx="{x + BOX_W / 2}" cy="{y - 24}" r="5" fill="{INK}"/>'
                       f'<path d="M{x + BOX_W / 2},{y - 19} L{x + BOX_W / 2},{y - 2}" '
                       f'stroke="{INK}" stroke-width="1.5" marker-end="url(#arrow)"/>')
    out.extend(labels)
    ly = height - 14
    out.append(f'<g class="wf-legend" font-size="10.5" fill="{MUTED}">'
               f'<path d="M{PAD},{ly - 4} l30,0" stroke="{SIG}" stroke-width="2.4" '
               f'stroke-dasharray="7 4"/><text x="{PAD + 36}" y="{ly}">signature gate '
               f'(meaning, signer roles)</text>'
               f'<rect x="{PAD + 250}" y="{ly - 10}" width="16" height="12" rx="3" '
               f'fill="#ecf8f0" stroke="#15803d"/><text x="{PAD + 272}" y="{ly}">final: done'
               f'</text><rect x="{PAD + 350}" y="{ly - 10}" width="16" height="12" rx="3" '
               f'fill="#f3f4f6" stroke="#6b7280"/><text x="{PAD + 372}" y="{ly}">final: void'
               f"</text></g>")
    out.append("</svg>")
    return "\n".join(out)
