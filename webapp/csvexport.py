"""The one home of CSV exports (audit trails, KPI tables and drill-downs): cells that a
spreadsheet would run as a formula are neutralised, and a UTF-8 byte-order mark is offered for
Excel (R-SEC-32).

A cell whose text starts with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return, which
some spreadsheets skip before looking for one) gets a leading apostrophe, as OWASP's "CSV
injection" advice says: ``=HYPERLINK(...)`` in a record title is exported as
``'=HYPERLINK(...)`` and shown as text. Numbers, and text that is a plain number
(``-3``, ``-0.25``), are written unchanged. The rest of the cell is never altered.

defusedcsv was not used: it does not cover a leading tab or carriage return, and it rewrites
``|`` inside cells, which would change what an audit-trail export says.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from numbers import Number
from typing import Any

from flask import Response, request

#: characters a spreadsheet reads as the start of a formula (tab and CR: skipped first)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
BOM = "\ufeff"


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell no spreadsheet runs: text starting with a formula character
    gets a leading ``'``; numbers, plain-number text, None and other text are unchanged."""
    if value is None or isinstance(value, Number):
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def write(rows: Iterable[Iterable[Any]], header: Iterable[str], *, bom: bool = False) -> str:
    """The CSV text of ``header`` and ``rows``, every cell through :func:`safe_cell`;
    ``bom``: start with a UTF-8 byte-order mark (Excel then reads the file as UTF-8)."""
    buf = io.StringIO()
    if bom:
        buf.write(BOM)
    w = csv.writer(buf)
    w.writerow([safe_cell(h) for h in header])
    for row in rows:
        w.writerow([safe_cell(c) for c in row])
    return buf.getvalue()


def wants_bom() -> bool:
    """The export was asked for with ``?bom=1`` (the "for Excel" links and checkboxes)."""
    return request.args.get("bom") == "1"


def response(
    rows: Iterable[Iterable[Any]], header: Iterable[str], filename: str, *, bom: bool | None = None
) -> Response:
    """A CSV download (``bom``: default :func:`wants_bom`)."""
    body = write(rows, header, bom=wants_bom() if bom is None else bom)
    return Response(
        body,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
