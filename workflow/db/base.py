"""The declarative base of the models (workflow/db/models.py): the MetaData naming convention
(the same constraint names on SQLite and PostgreSQL), the UTC datetime column type, and the
tables the migrations create that are not modelled."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import JSON, DateTime, Enum, MetaData, Table
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.types import TypeDecorator

from workflow.clock import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: tables the migrations create that are not modelled here: the full-text index of records
#: (migration 0011; an FTS5 table and its shadow tables on SQLite, a tsvector table on
#: PostgreSQL), written by triggers and read by workflow/queries/search.py
UNMODELLED_TABLES = "record_search"


def modelled(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's ``include_object``: leave :data:`UNMODELLED_TABLES` (and their indexes) out
    of autogenerate's comparison."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return not (table or "").startswith(UNMODELLED_TABLES)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use workflow.clock")
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value) if value is not None else None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # every model here maps one Table (DeclarativeBase types it as any FromClause), so Core
    # statements can be built from it: insert(Model.__table__)
    __table__: ClassVar[Table]
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


M = TypeVar("M", bound=Base)


def from_row(cls: type[M], values: Mapping[Any, Any]) -> M:
    """A model object holding ``values`` (a row's columns, already converted by the column
    types) the way the ORM's own loading builds one: the values go into the object's dict
    without an attribute event each (the constructor fires one per column; issue 18: ~40 a
    step for the locked record and the actor). The object is transient and unmodified;
    later attribute changes are tracked as usual."""
    obj: M = manager_of_class(cls).new_instance()
    obj.__dict__.update(values)
    return obj


def enum_column(cls: type[enum.Enum], name: str) -> Enum:
    """A string column holding an enum's values (not a native database enum: the same on
    SQLite and PostgreSQL), validated on the way in."""
    return Enum(cls, name=name, native_enum=False, length=20,
                values_callable=lambda e: [m.value for m in e], validate_strings=True)
