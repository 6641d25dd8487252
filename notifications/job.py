"""Delivery as a scheduled job: ``job: dispatch_notifications`` in the schedules file (every
minute). The scheduler's job context is passed in; nothing here imports the scheduler or the
engine."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from notifications.dispatcher import UnitOfWork, dispatch


class DeliveryContext(Protocol):
    """What the job needs of the scheduler's context (``JobContext`` has it)."""

    @property
    def uow(self) -> UnitOfWork: ...

    @property
    def now(self) -> datetime: ...


def dispatch_notifications(ctx: DeliveryContext) -> dict[str, Any]:
    """Deliver pending outbox messages (notifications/): in-app, e-mail, digests."""
    return dispatch(ctx.uow, now=ctx.now).summary()
