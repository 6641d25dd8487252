"""Definition drafts (a process owner's working copy, workflow/change_control/drafts.py)
and form drafts (a person's unsubmitted form, workflow/form_drafts.py): working data, not
GxP records."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from workflow.db.base import Base, enum_column


class DraftStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_APPROVAL = "in_approval"
    PUBLISHED = "published"
    WITHDRAWN = "withdrawn"


class DefinitionDraft(Base):
    """A process owner's working copy of a workflow definition (workflow/change_control/drafts.py).

    Editable while ``draft``; submitting starts a definition_change record (DCR) and makes it
    ``in_approval``; QA's signed approval publishes it as the next version (``published``).
    ``version`` is the optimistic-save counter: a save names the version it edited."""

    __tablename__ = "definition_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40), index=True)
    source: Mapped[str] = mapped_column(Text)
    base_version: Mapped[int | None] = mapped_column(Integer)  # published version it edits
    status: Mapped[DraftStatus] = mapped_column(enum_column(DraftStatus, "draft_status"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    updated_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    submitted_hash: Mapped[str | None] = mapped_column(String(64))
    change_record_id: Mapped[int | None] = mapped_column(ForeignKey("records.id"))
    published_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("definition_versions.id"))


class FormDraft(Base):
    """A person's unsubmitted form (a step or a new record), saved while they type so an idle
    timeout does not lose it. Not part of any record and never audited: only its owner reads
    it, submitting the form deletes it (webapp/views/drafts.py, workflow/queries/drafts.py)."""

    __tablename__ = "form_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: ``<record number>/<step>`` or ``new/<workflow>``
    form_key: Mapped[str] = mapped_column(String(200))
    record_id: Mapped[int | None] = mapped_column(ForeignKey("records.id"))
    data: Mapped[str] = mapped_column(Text)  # JSON of field name -> value
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("user_id", "form_key"),)
