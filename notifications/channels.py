"""E-mail through SMTP, configured by ``QMS_SMTP_URL``.

``smtp://user:password@host:25`` (plain, or ``?starttls=1`` for STARTTLS),
``smtps://user:password@host:465`` (TLS from the first byte). User and password are
optional (URL-encode special characters). ``QMS_SMTP_FROM`` is the sender address.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

from workflow import clock, config

log = logging.getLogger(__name__)


class SmtpConfigError(ValueError):
    """QMS_SMTP_URL cannot be understood."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_ssl: bool = False
    starttls: bool = False
    sender: str = "qms@localhost"
    timeout: float = 10.0
    max_attempts: int = 5
    retry_seconds: int = 60

    @classmethod
    def from_url(cls, url: str, **kw: object) -> SmtpSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise SmtpConfigError(f"QMS_SMTP_URL must start with smtp:// or smtps://, not "
                                  f"{parts.scheme or '(none)'}://")
        if not parts.hostname:
            raise SmtpConfigError("QMS_SMTP_URL names no host")
        query = parse_qs(parts.query)
        starttls = query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
        use_ssl = parts.scheme == "smtps"
        if use_ssl and starttls:
            raise SmtpConfigError("smtps:// is TLS already; drop ?starttls=1")
        return cls(host=parts.hostname, port=parts.port or (465 if use_ssl else 25),
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   use_ssl=use_ssl, starttls=starttls, **kw)  # type: ignore[arg-type]

    @classmethod
    def from_settings(cls, settings: config.Settings | None = None) -> SmtpSettings | None:
        """None when QMS_SMTP_URL is unset (e-mail off; in-app messages still work).
        ``settings``: default, this process's (:func:`workflow.config.settings`)."""
        s = settings if settings is not None else config.settings()
        url = (s.smtp_url or "").strip()
        if not url:
            return None
        return cls.from_url(url, sender=s.smtp_from, timeout=s.smtp_timeout,
                            max_attempts=s.smtp_max_attempts, retry_seconds=s.smtp_retry_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmtpSettings | None:
        """The e-mail settings of an environment mapping (``QMS_SMTP_*``)."""
        return cls.from_settings(config.Settings.from_env(env))

    def redacted(self) -> str:
        scheme = "smtps" if self.use_ssl else "smtp"
        who = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{who}{self.host}:{self.port}" + ("?starttls=1" if self.starttls else "")


class Mailer:
    """One SMTP connection for a batch of messages: ``with Mailer(s) as m: m.send(...)``."""

    def __init__(self, settings: SmtpSettings, tls_context: ssl.SSLContext | None = None):
        self.settings = settings
        self.tls_context = tls_context or ssl.create_default_context()
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Mailer:
        s = self.settings
        if s.use_ssl:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                                  context=self.tls_context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.starttls:
                smtp.starttls(context=self.tls_context)
            if s.username:
                smtp.login(s.username, s.password or "")
        except Exception:
            smtp.close()
            raise
        self._smtp = smtp
        return self

    def send(self, to: str, subject: str, body: str, *, ref: str = "", html: str | None = None,
             message_id: str | None = None, thread: str | None = None) -> None:
        """Send one message: ``body`` is the text part; ``html`` (optional) the HTML part of
        the same content; ``message_id``/``thread``: its Message-ID and the id of the thread
        it belongs to (In-Reply-To and References), so mail clients group a record's
        messages."""
        assert self._smtp is not None, "use Mailer as a context manager"
        domain = self.settings.sender.rpartition("@")[2] or None
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = format_datetime(clock.now())
        msg["Message-ID"] = message_id or make_msgid(domain=domain)
        if thread:
            msg["In-Reply-To"] = thread
            msg["References"] = thread
        if ref:
            msg["X-QMS-Outbox"] = ref
        msg.set_content(body)
        if html:
            msg.add_alternative(html, subtype="html")
        self._smtp.send_message(msg)

    def domain(self) -> str:
        """The domain of the sender address (message ids are made in it)."""
        return self.settings.sender.rpartition("@")[2] or "localhost"

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except Exception:  # noqa: BLE001 - the messages were accepted already
            self._smtp.close()
        self._smtp = None
