"""Check and normalise input values against a definition's field specs.

Values are stored as JSON: dates and datetimes as ISO 8601 strings (datetimes in UTC),
decimals as strings (no binary floating point in GxP records), users as usernames and
references as record numbers. Existence of users and records is checked by the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from workflow.blobs import SHA256, is_file_value
from workflow.spec import expressions
from workflow.spec.model import FieldSpec

DEFAULT_MAX_STRING = 200
DEFAULT_MAX_TEXT = 20000
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


class FieldValueError(ValueError):
    pass


def choice_label(name: Any) -> str:
    """How a choice key reads (``under_review`` -> ``Under review``), everywhere it is shown."""
    return str(name).replace("_", " ").capitalize()


def _file(value: Any) -> dict[str, Any]:
    """A file value (workflow/blobs.py): what an upload returned, checked for shape; the
    engine checks that the file is stored."""
    if not is_file_value(value):
        raise FieldValueError("must be an uploaded file ({sha256, name, size, type})")
    if not SHA256.match(str(value["sha256"])):
        raise FieldValueError("has no valid SHA-256")
    if not isinstance(value["name"], str) or not 0 < len(value["name"]) <= 200:
        raise FieldValueError("needs a file name of 1 to 200 characters")
    if isinstance(value["size"], bool) or not isinstance(value["size"], int) or value["size"] < 1:
        raise FieldValueError("needs a size in bytes")
    if not isinstance(value["type"], str) or "/" not in value["type"]:
        raise FieldValueError("needs a media type")
    if "\x00" in value["name"] + value["type"]:
        raise FieldValueError("has a NUL character in its name or type")
    return {k: value[k] for k in ("sha256", "name", "size", "type")}


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def coerce(spec: FieldSpec, value: Any) -> Any:
    """Return the stored form of ``value`` or raise FieldValueError with a readable reason."""
    if value is None or (isinstance(value, str) and value.strip() == "" and spec.type != "list"):
        return None
    t = spec.type
    if t in ("string", "text"):
        if not isinstance(value, str):
            raise FieldValueError("must be text")
        value = value.strip() if t == "string" else value
        if "\x00" in value:
            # no database text type holds it, and PostgreSQL's jsonb refuses it (R-PERF-75):
            # refused alike on every database, with a reason
            raise FieldValueError("must not contain a NUL character")
        limit = spec.max_length or (DEFAULT_MAX_STRING if t == "string" else DEFAULT_MAX_TEXT)
        if len(value) > limit:
            raise FieldValueError(f"is longer than {limit} characters")
        if t == "string" and ("\n" in value or "\r" in value):
            raise FieldValueError("must be a single line")
        return value
    if t == "integer":
        if isinstance(value, bool):
            raise FieldValueError("must be a whole number")
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise FieldValueError(f"{value!r} is not a whole number") from None
        if not isinstance(value, int):
            raise FieldValueError("must be a whole number")
        _range(spec, value)
        return value
    if t == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | str | Decimal | float):
            raise FieldValueError("must be a number")
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            raise FieldValueError(f"{value!r} is not a number") from None
        if not d.is_finite():
            raise FieldValueError("must be a finite number")
        _range(spec, d)
        return str(d)
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise FieldValueError("must be yes or no")
    if t == "date":
        if isinstance(value, datetime):
            raise FieldValueError("must be a date without a time")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()).isoformat()
            except ValueError:
                raise FieldValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
        raise FieldValueError("must be a date (YYYY-MM-DD)")
    if t == "datetime":
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise FieldValueError(f"{value!r} is not a date and time (ISO 8601)") from None
        if not isinstance(value, datetime):
            raise FieldValueError("must be a date and time (ISO 8601)")
        if value.tzinfo is None:
            raise FieldValueError("needs a time zone (e.g. 2026-05-01T14:30:00+02:00)")
        return value.astimezone(UTC).isoformat()
    if t == "choice":
        if value not in spec.choices:
            raise FieldValueError(f"{value!r} is not one of: {', '.join(spec.choices)}")
        return value
    if t == "user":
        if not isinstance(value, str):
            raise FieldValueError("must be a username")
        return value.strip().lower()
    if t == "file":
        return _file(value)
    if t == "reference":
        if not isinstance(value, str):
            raise FieldValueError("must be a record number")
        return value.strip().upper()
    if t == "list":
        if not isinstance(value, list | tuple):
            raise FieldValueError("must be a list")
        out = []
        for i, item in enumerate(value):
            try:
                if spec.item is not None:
                    v = coerce(spec.item, item)
                    if v is None:
                        raise FieldValueError("is empty")
                    out.append(v)
                else:
                    out.append(_coerce_object(spec, item))
            except FieldValueError as exc:
                raise FieldValueError(f"item {i + 1} {exc}") from None
        return out
    raise FieldValueError(f"has unknown type {t!r}")  # pragma: no cover - schema prevents it


def _coerce_object(spec: FieldSpec, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise FieldValueError("must be an object with " + ", ".join(f.name for f in spec.fields))
    known = {f.name: f for f in spec.fields}
    unknown = set(item) - set(known)
    if unknown:
        raise FieldValueError(f"has unknown key(s) {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, sub in known.items():
        if sub.computed:
            continue  # never taken from input: compute() sets it
        try:
            v = coerce(sub, item.get(name))
        except FieldValueError as exc:
            raise FieldValueError(f"{name} {exc}") from None
        if v is not None:
            out[name] = v
    return out


def has_computed(spec: FieldSpec) -> bool:
    return spec.type == "list" and any(sub.computed for sub in spec.fields)


def compute(spec: FieldSpec, rows: list[dict[str, Any]], record: Mapping[str, Any]
            ) -> list[dict[str, Any]]:
    """``rows`` of list ``spec`` with each ``computed`` column evaluated (in declared order)
    over the row's columns and the record's fields ``record``; a row whose inputs are missing
    raises FieldValueError naming them."""
    out = []
    for i, row in enumerate(rows):
        row = {k: v for k, v in row.items() if not _is_computed(spec, k)}
        for sub in spec.fields:
            if not sub.computed:
                continue
            try:
                value = expressions.evaluate(sub.computed, {**record, **_blank(spec), **row})
                value = coerce(FieldSpec(sub.name, sub.type, sub.label, choices=sub.choices),
                               value)
            except (expressions.ExpressionError, FieldValueError) as exc:
                used = expressions.names_in(sub.computed)
                missing = [c.label for c in spec.fields
                           if c.name in used and not c.computed and is_empty(row.get(c.name))]
                if missing:
                    raise FieldValueError(
                        f"row {i + 1}: {sub.label} cannot be computed: give "
                        f"{', '.join(missing)}") from None
                raise FieldValueError(f"row {i + 1}: {sub.label} cannot be computed ({exc})"
                                      ) from None
            if value is not None:
                row[sub.name] = value
        out.append(row)
    return out


def _is_computed(spec: FieldSpec, column: str) -> bool:
    return any(c.name == column and c.computed for c in spec.fields)


def _blank(spec: FieldSpec) -> dict[str, Any]:
    return {c.name: None for c in spec.fields}


def _range(spec: FieldSpec, value: Any) -> None:
    if spec.min is not None and value < Decimal(str(spec.min)):
        raise FieldValueError(f"must be at least {spec.min}")
    if spec.max is not None and value > Decimal(str(spec.max)):
        raise FieldValueError(f"must be at most {spec.max}")


def users_in(spec: FieldSpec, value: Any) -> list[str]:
    """Usernames referenced by a stored value (for existence checks)."""
    return _collect(spec, value, "user")


def files_in(spec: FieldSpec, value: Any) -> list[dict[str, Any]]:
    """The file values a stored value holds (a file field's one file)."""
    return [value] if spec.type == "file" and is_file_value(value) else []


def references_in(spec: FieldSpec, value: Any) -> list[tuple[str, str]]:
    """(workflow, number) pairs referenced by a stored value."""
    out: list[tuple[str, str]] = []
    _collect_refs(spec, value, out)
    return out


def _collect(spec: FieldSpec, value: Any, kind: str) -> list[str]:
    if value is None:
        return []
    if spec.type == kind:
        return [value]
    if spec.type == "list":
        out = []
        for item in value:
            if spec.item is not None:
                out += _collect(spec.item, item, kind)
            else:
                for sub in spec.fields:
                    out += _collect(sub, item.get(sub.name), kind)
        return out
    return []


def _collect_refs(spec: FieldSpec, value: Any, out: list[tuple[str, str]]) -> None:
    if value is None:
        return
    if spec.type == "reference":
        out.append((spec.workflow or "", value))
    elif spec.type == "list":
        for item in value:
            if spec.item is not None:
                _collect_refs(spec.item, item, out)
            else:
                for sub in spec.fields:
                    _collect_refs(sub, item.get(sub.name), out)


def people_places(specs: Iterable[FieldSpec]) -> list[tuple[str, str]]:
    """Where a record's data names people: (field, "") for a user field or a list of users,
    (field, column) for a user column of a table field. The ``record_people`` index holds
    the usernames found there (migration 0015; workflow/registry.py writes these places
    when a version is published)."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        if spec.type == "user" or (spec.type == "list" and spec.item is not None
                                   and spec.item.type == "user"):
            out.append((spec.name, ""))
        elif spec.type == "list":
            out += [(spec.name, sub.name) for sub in spec.fields if sub.type == "user"]
    return out
