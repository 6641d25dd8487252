"""The people index's tables (migration 0015): where a definition version's records name
people, and the people each record names. Derived data kept by database triggers; see
the migration for how."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from workflow.db.base import Base


class DefinitionPerson(Base):
    """A place where records of a definition version name a person: a user field
    (``field``), a list of users, or a user column ``sub`` of a table field. Written when
    the version is published (workflow/registry.py); the triggers that keep
    ``record_people`` read it (migration 0015). Derived from the immutable source."""

    __tablename__ = "definition_people"

    definition_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    field: Mapped[str] = mapped_column(String(40), primary_key=True)
    sub: Mapped[str] = mapped_column(String(40), primary_key=True, default="")


class RecordPerson(Base):
    """A person (username) a record's data names, and in which field: "the records that
    name me" (e.g. a trainee's trainings) is an index look-up, not a scan of every record's
    JSON. Kept by database triggers on ``records`` in the statement that writes the record
    (migration 0015), so no writer can skip it and a rollback takes it back. Derived data:
    not sealed, rebuilt by re-running the migration."""

    __tablename__ = "record_people"

    record_id: Mapped[int] = mapped_column(ForeignKey("records.id"), primary_key=True)
    field: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), primary_key=True)

    __table_args__ = (Index("ix_record_people_username", "username", "field", "record_id"),)
