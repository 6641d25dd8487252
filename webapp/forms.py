"""WTForms built from a workflow definition's field specs.

Values are posted as text and handed to the engine, which validates and normalises them
(one set of rules for the UI, the API and the CLI); its per-field errors are shown next to
the fields.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.datastructures import FileStorage
from wtforms import (
    Field,
    FieldList,
    Form,
    FormField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from workflow.spec.model import FieldSpec, WorkflowDefinition

BOOL_CHOICES = [SelectChoice("", "—"), SelectChoice("yes", "Yes"), SelectChoice("no", "No")]


def choices(pairs: list[tuple[str, str]], blank: bool = True) -> list[SelectChoice]:
    return ([SelectChoice("", "—")] if blank else []) + [SelectChoice(v, t) for v, t in pairs]


def _make(spec: FieldSpec, users: list[tuple[str, str]]) -> Field:
    kw: dict[str, Any] = {"label": spec.label, "description": spec.help,
                          "validators": [Optional()]}
    t = spec.type
    if spec.computed:  # the engine computes it (workflow/spec/fields.py compute): read-only
        return StringField(render_kw={"readonly": True, "tabindex": "-1", "class": "computed"},
                           **kw)
    if t == "text":
        return TextAreaField(render_kw={"rows": 4}, **kw)
    if t == "boolean":
        return SelectField(choices=BOOL_CHOICES, **kw)
    if t == "choice":
        return SelectField(choices=choices([(c, c.replace("_", " ").capitalize())
                                            for c in spec.choices]), **kw)
    if t == "user":
        return SelectField(choices=choices(users), **kw)
    if t == "date":
        return StringField(render_kw={"type": "date"}, **kw)
    if t == "datetime":
        return StringField(render_kw={"placeholder": "2026-05-01T14:30:00+02:00"}, **kw)
    if t in ("integer", "decimal"):
        return StringField(render_kw={"inputmode": "decimal" if t == "decimal" else "numeric"},
                           **kw)
    if t == "file":
        kw["description"] = (spec.help + " " if spec.help else "") + \
            "Choose a file to attach (it replaces the file attached now, if any)."
        return FileField(**kw)
    if t == "reference":
        return StringField(render_kw={"placeholder": f"{(spec.workflow or '').upper()} number",
                                      "pattern": r"[A-Za-z0-9-]+"}, **kw)
    if t == "list" and spec.item is not None:
        kw["description"] = (spec.help + " " if spec.help else "") + "One per line."
        return TextAreaField(render_kw={"rows": 3}, **kw)
    if t == "list":
        class Row(Form):
            pass

        for sub in spec.fields:
            setattr(Row, sub.name, _make(sub, users))
        return FieldList(FormField(Row), label=spec.label, description=spec.help,
                         min_entries=1)
    return StringField(render_kw={"maxlength": spec.max_length or 200}, **kw)


def build_form(d: WorkflowDefinition, names: tuple[str, ...], users: list[tuple[str, str]], *,
               reason: bool = False, signature: bool = False, blank_rows: int = 2,
               change_reason: bool = False) -> type:
    """A FlaskForm class with one field per name, plus reason and signature fields.
    ``change_reason``: the form shows values entered earlier, so the comment field is the
    reason for change the engine asks for when one of them is changed or cleared."""

    class DynamicForm(FlaskForm):
        expected_version = HiddenField()

    for name in names:
        setattr(DynamicForm, name, _make(d.fields[name], users))
    if reason:
        DynamicForm.reason = TextAreaField("Reason", validators=[DataRequired(), Length(max=2000)],
                                           render_kw={"rows": 2})
    elif change_reason:
        DynamicForm.reason = TextAreaField(
            "Reason for change", validators=[Optional(), Length(max=2000)],
            description="Needed when you change or clear a value entered by someone else or "
                        "at an earlier step; recorded in the audit trail with the old and new "
                        "value.", render_kw={"rows": 2})
    else:
        DynamicForm.reason = TextAreaField("Comment (optional)", validators=[Optional()],
                                           render_kw={"rows": 2})
    if signature:
        DynamicForm.sig_username = StringField("Username", validators=[DataRequired()],
                                               render_kw={"autocomplete": "username"})
        DynamicForm.sig_password = PasswordField("Password", validators=[DataRequired()],
                                                 render_kw={"autocomplete": "current-password"})
        DynamicForm.sig_totp = StringField("Authentication code", validators=[Optional()],
                                           render_kw={"autocomplete": "one-time-code",
                                                      "inputmode": "numeric"})
    DynamicForm.blank_rows = blank_rows
    return DynamicForm


def initial(d: WorkflowDefinition, names: tuple[str, ...], data: dict[str, Any],
            blank_rows: int = 1) -> dict[str, Any]:
    """Form data for the current values (lists of objects get a blank row to fill; a
    generated list that has rows gets none: its rows are fixed)."""
    out: dict[str, Any] = {}
    for name in names:
        spec = d.fields[name]
        v = data.get(name)
        if spec.type == "boolean":
            out[name] = "" if v is None else ("yes" if v else "no")
        elif spec.type == "file":
            out[name] = None  # a file input shows no value; the attached file is listed
        elif spec.type == "list" and spec.item is not None:
            out[name] = "\n".join(str(x) for x in v or [])
        elif spec.type == "list":
            rows = []
            for item in v or []:
                rows.append({sub.name: _to_text(sub, item.get(sub.name)) for sub in spec.fields})
            if not (spec.generated and rows):
                rows += [{} for _ in range(blank_rows)]
            out[name] = rows
        else:
            out[name] = "" if v is None else str(v)
    return out


def _to_text(spec: FieldSpec, v: Any) -> str:
    if spec.type == "boolean":
        return "" if v is None else ("yes" if v else "no")
    return "" if v is None else str(v)


def posted(d: WorkflowDefinition, names: tuple[str, ...], form: FlaskForm) -> dict[str, Any]:
    """The engine's input: text values, empty meaning "clear", empty list rows dropped."""
    out: dict[str, Any] = {}
    for name in names:
        spec = d.fields[name]
        field = form[name]
        if spec.type == "list" and spec.item is not None:
            out[name] = [ln.strip() for ln in (field.data or "").splitlines() if ln.strip()]
        elif spec.type == "list":
            rows = []
            for entry in field.entries:
                computed = {sub.name for sub in spec.fields if sub.computed}
                row = {k: (v.strip() if isinstance(v, str) else v)
                       for k, v in entry.data.items() if k != "csrf_token" and k not in computed}
                if any(v not in (None, "") for v in row.values()):
                    rows.append({k: _bool(sub, row.get(k)) for k, sub in
                                 ((s.name, s) for s in spec.fields) if row.get(k) not in (None, "")})
            out[name] = rows
        elif spec.type == "file":
            # an upload (a FileStorage) or nothing: no file chosen keeps the current one
            # (webapp/downloads.py attach_uploads stores it and puts its file value here)
            if isinstance(field.data, FileStorage) and field.data.filename:
                out[name] = field.data
        else:
            v = field.data
            v = v.strip() if isinstance(v, str) else v
            out[name] = _bool(spec, v) if v not in (None, "") else None
    return out


def file_fields(d: WorkflowDefinition, names: tuple[str, ...]) -> list[str]:
    """The fields of ``names`` that take an uploaded file (the form is multipart)."""
    return [n for n in names if d.fields[n].type == "file"]


def _bool(spec: FieldSpec, v: Any) -> Any:
    if spec.type == "boolean" and isinstance(v, str):
        return v == "yes"
    return v


# --------------------------------------------------------------------------- list rows

#: a CSV import adds at most this many rows at once
MAX_CSV_ROWS = 2000


class CsvError(ValueError):
    """A CSV file that cannot be imported into list ``field``; the message says where."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def csv_fields(d: WorkflowDefinition) -> set[str]:
    """The list fields whose form offers a CSV import (``csv_import: true``)."""
    return {n for n, f in d.fields.items() if f.csv_import and f.fields}


def csv_rows(spec: FieldSpec, raw: bytes) -> list[dict[str, str]]:
    """The rows of a CSV file for list ``spec``: the first line names the columns (by name
    or label, any case); empty lines are skipped. The values stay text: the engine checks
    them like typed ones.

    Raises:
        CsvError: not UTF-8, no header, an unknown column, a line longer than the header,
            too many rows.
    """
    import csv
    import io

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvError(spec.name, f"{spec.label}: the CSV file is not UTF-8 text.") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise CsvError(spec.name, f"{spec.label}: the CSV file is empty.")
        names = {c.label.strip().lower(): c.name for c in spec.fields}
        names.update({c.name.lower(): c.name for c in spec.fields})
        columns = []
        for h in header:
            key = names.get(h.strip().lower())
            if key is None:
                known = ", ".join(c.name for c in spec.fields)
                raise CsvError(spec.name, f"{spec.label}: CSV line 1: unknown column "
                                          f"{h.strip()!r} (the columns are: {known}).")
            columns.append(key)
        rows: list[dict[str, str]] = []
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(columns):
                raise CsvError(spec.name, f"{spec.label}: CSV line {line} has "
                                          f"{len(cells)} cells for {len(columns)} columns.")
            if len(rows) >= MAX_CSV_ROWS:
                raise CsvError(spec.name, f"{spec.label}: the CSV file has more than "
                                          f"{MAX_CSV_ROWS} rows; import it in parts.")
            rows.append({columns[i]: v.strip() for i, v in enumerate(cells) if v.strip()})
    except csv.Error as exc:
        raise CsvError(spec.name, f"{spec.label}: the CSV file cannot be read: {exc}") from None
    return rows


def add_csv_rows(d: WorkflowDefinition, names: tuple[str, ...], files: Any,
                 data: dict[str, Any]) -> None:
    """Append the rows of each uploaded CSV file (``<field>__csv``) to ``data[field]``."""
    for name in names:
        spec = d.fields[name]
        upload = files.get(f"{name}__csv") if spec.csv_import and spec.fields else None
        if upload is None or not upload.filename:
            continue
        raw = upload.read()
        if raw.strip():
            data[name] = list(data.get(name) or []) + csv_rows(spec, raw)

