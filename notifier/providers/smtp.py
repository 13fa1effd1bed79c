"""Email through any SMTP server, on Django's SMTP mail backend (the fallback behind SendGrid).

Config keys, passed to build(config):
    host         SMTP server host name, default "localhost"
    port         SMTP port (number); default 465 with use_ssl, 587 with use_tls, 25 otherwise
    username     login name; no AUTH when empty
    password     login password
    use_tls      STARTTLS after connecting (bool), default False
    use_ssl      implicit TLS from the first byte (bool), default False; not together with use_tls
    from_email   sender, "alerts@example.com" or "Notifier <alerts@example.com>" (required: without it
                 every message fails permanently with code "config", never Django's DEFAULT_FROM_EMAIL)
    timeout      seconds for connecting and for each SMTP command (number), default 10

Each message is multipart/alternative (text/plain from message.body, text/html from message.html_body
when there is one) with a Message-ID we generate and return as provider_message_id, X-Notification-ID,
and message.headers (List-Unsubscribe, ...). send() uses a connection of its own; send_as_completed() sends
the whole batch over one connection, opening a fresh one after a connection-level failure.

Django's settings must be configured (the mail classes read DEFAULT_CHARSET), but no EMAIL_* setting is
used: everything comes from the config.

Errors (SMTP reply codes, RFC 5321 section 4.2; enhanced status codes, RFC 3463):
    5xx to RCPT TO                              PermanentError; target_gone for 550/551/553 when the
                                                enhanced status, if any, says the address is bad (5.1.x)
                                                or the mailbox disabled (5.2.1)
    other 5xx replies (sender, DATA, 535 AUTH)  PermanentError
    4xx replies, connection errors, timeouts    TransientError
"""
from __future__ import annotations

import logging
import re
import smtplib
from email.utils import make_msgid, parseaddr

from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend

from notifier.providers.base import (
    Message,
    PermanentError,
    Provider,
    ProviderError,
    SendResult,
    TransientError,
    sent_log_level,
)

logger = logging.getLogger(__name__)

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
DEFAULT_TIMEOUT = 10.0

# Replies to RCPT TO that mean the mailbox does not exist (RFC 5321 section 4.2.3): 550 mailbox
# unavailable, 551 user not local, 553 mailbox name not allowed.
GONE_REPLY_CODES = {550, 551, 553}
# 550 is also used for policy refusals ("550 5.7.1 spam"); the enhanced status tells them apart.
ENHANCED_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def default_port(use_tls: bool, use_ssl: bool) -> int:
    if use_ssl:
        return 465
    return 587 if use_tls else 25


class SMTPProvider(Provider):
    """Sends email over SMTP through Django's mail backend. See the module docstring for config and errors."""

    name = "smtp"
    channel = "email"

    def __init__(self, from_email: str, host: str = "localhost", port: int | None = None, username: str = "",
                 password: str = "", use_tls: bool = False, use_ssl: bool = False,
                 timeout: float = DEFAULT_TIMEOUT):
        self.from_email = from_email
        self.host = host
        self.port = port or default_port(use_tls, use_ssl)
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.use_ssl = use_ssl
        self.timeout = timeout
        self.sender_domain = parseaddr(from_email)[1].rpartition("@")[2] or "localhost"

    def send(self, message: Message) -> SendResult:
        """Send one email on a new connection. Returns SendResult(provider_message_id=the Message-ID),
        or raises PermanentError / TransientError as listed in the module docstring."""
        self._refuse_bad_config()
        connection = self._connection()
        try:
            return self._send_on(connection, message)
        finally:
            _close_quietly(connection)

    def send_as_completed(self, messages: list[Message]):
        """Send the messages one after another over a single connection, yielding each outcome as it comes.

        After a connection-level failure the next message reconnects; when connecting itself fails, the
        rest of the batch gets that error without more attempts (the server is down or refuses us)."""
        try:
            self._refuse_bad_config()
        except PermanentError as error:
            for index in range(len(messages)):
                yield index, PermanentError(str(error), code=error.code)
            return
        connection = self._connection()
        try:
            for index, message in enumerate(messages):
                if connection.connection is None:
                    try:
                        connection.open()
                    except (smtplib.SMTPException, OSError) as error:
                        for rest in range(index, len(messages)):
                            yield rest, self._error_from(error, messages[rest])
                        return
                outcome = self._outcome_on(connection, message)
                if isinstance(outcome, TransientError):
                    _close_quietly(connection)
                yield index, outcome
        finally:
            _close_quietly(connection)

    def email_message(self, message: Message) -> EmailMultiAlternatives:
        """The Django email for one message, with a fresh Message-ID."""
        headers = {
            "Message-ID": make_msgid(domain=self.sender_domain),
            "X-Notification-ID": str(message.notification_id),
            **message.headers,
        }
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.body,
            from_email=self.from_email,
            to=[message.to],
            headers=headers,
        )
        if message.html_body:
            email.attach_alternative(message.html_body, "text/html")
        return email

    def _refuse_bad_config(self) -> None:
        if not self.from_email:
            # Django would silently send from settings.DEFAULT_FROM_EMAIL ("webmaster@localhost"), which
            # receiving servers reject or file as spam: refuse until the sender is configured (EMAIL_FROM).
            raise PermanentError("SMTP: no sender configured (from_email, EMAIL_FROM)", code="config")
        if self.use_tls and self.use_ssl:
            # Django's backend would raise ValueError; no message can be sent until the config is fixed.
            raise PermanentError("SMTP: use_tls and use_ssl are mutually exclusive", code="config")

    def _connection(self) -> EmailBackend:
        # Every argument is explicit: Django falls back to the EMAIL_* settings for any left as None.
        return get_connection(
            SMTP_BACKEND,
            fail_silently=False,
            host=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.use_tls,
            use_ssl=self.use_ssl,
            timeout=self.timeout,
        )

    def _outcome_on(self, connection: EmailBackend, message: Message) -> SendResult | ProviderError:
        try:
            return self._send_on(connection, message)
        except ProviderError as error:
            return error
        except Exception as error:  # a bug or an unexpected answer: retry rather than lose the message
            return TransientError(f"{type(error).__name__}: {error}", code="unexpected")

    def _send_on(self, connection: EmailBackend, message: Message) -> SendResult:
        try:
            email = self.email_message(message)
            email.connection = connection
            email.send()
        except (smtplib.SMTPException, OSError) as error:
            raise self._error_from(error, message) from error
        except ValueError as error:
            # Django refuses header values with newlines and addresses it cannot parse.
            raise PermanentError(f"Invalid email: {error}", code="invalid_message") from error

        message_id = email.extra_headers["Message-ID"]
        logger.log(sent_log_level(message), "SMTP: sent to %s (delivery %s, message %s)", message.to,
                   message.delivery_id, message_id)
        return SendResult(provider_message_id=message_id)

    def _error_from(self, error: Exception, message: Message) -> ProviderError:
        """Our error kind for an smtplib error or an OSError (smtplib.SMTPException is an OSError)."""
        if isinstance(error, smtplib.SMTPRecipientsRefused):
            code, reply = next(iter(error.recipients.values()))
            reply = _text(reply)
            logger.warning("SMTP: %s refused %s (delivery %s): %s", self.host, message.to,
                           message.delivery_id, reply)
            if code >= 500:
                return PermanentError(f"Recipient refused: {code} {reply}", code=str(code),
                                      target_gone=_mailbox_is_gone(code, reply))
            return TransientError(f"Recipient deferred: {code} {reply}", code=str(code))

        if isinstance(error, smtplib.SMTPResponseException):
            code, reply = error.smtp_code, _text(error.smtp_error)
            logger.warning("SMTP: %s answered %s for delivery %s: %s", self.host, code, message.delivery_id, reply)
            if code >= 500:
                return PermanentError(f"SMTP server refused: {code} {reply}", code=str(code))
            return TransientError(f"SMTP server deferred: {code} {reply}", code=str(code))

        if isinstance(error, smtplib.SMTPNotSupportedError):
            # e.g. use_tls against a server without STARTTLS: the configuration is wrong, retrying won't help.
            return PermanentError(f"SMTP server does not support what we asked: {error}", code="not_supported")

        # SMTPServerDisconnected, other SMTPExceptions, refused connections, timeouts, TLS failures.
        logger.warning("SMTP: connection to %s:%s failed for delivery %s: %s", self.host, self.port,
                       message.delivery_id, error)
        return TransientError(f"SMTP connection failed: {type(error).__name__}: {error}", code="connection")

    def check(self) -> list[str]:
        problems = []
        if not self.host:
            problems.append("SMTP: no host configured")
        if not self.from_email:
            problems.append("SMTP: no sender (from_email) configured")
        elif "@" not in parseaddr(self.from_email)[1]:
            problems.append(f"SMTP: from_email {self.from_email!r} is not an email address")
        if self.use_tls and self.use_ssl:
            problems.append("SMTP: use_tls and use_ssl are mutually exclusive")
        if bool(self.username) != bool(self.password):
            problems.append("SMTP: username and password must be set together")
        return problems

    def close(self) -> None:
        """Nothing to release: connections are closed after each send() and each batch."""


def _mailbox_is_gone(code: int, reply: str) -> bool:
    """550/551/553 to RCPT TO, unless an enhanced status code says it is about something other than the
    address (5.7.1 policy, 5.4.x routing, ...)."""
    if code not in GONE_REPLY_CODES:
        return False
    enhanced = ENHANCED_STATUS.match(reply)
    if not enhanced:
        return True
    subject, detail = enhanced.group(2), enhanced.group(3)
    return subject == "1" or (subject, detail) == ("2", "1")


def _text(reply) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _close_quietly(connection: EmailBackend) -> None:
    """Close after sending: a failing QUIT must not turn a sent message into an error."""
    try:
        connection.close()
    except (smtplib.SMTPException, OSError):
        connection.connection = None


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def build(config: dict) -> SMTPProvider:
    """An SMTPProvider from config keys host, port, username, password, use_tls, use_ssl, from_email,
    timeout."""
    port = config.get("port")
    return SMTPProvider(
        from_email=config.get("from_email") or "",
        host=config.get("host") or "localhost",
        port=int(port) if port else None,
        username=config.get("username") or "",
        password=config.get("password") or "",
        use_tls=_flag(config.get("use_tls", False)),
        use_ssl=_flag(config.get("use_ssl", False)),
        timeout=float(config.get("timeout") or DEFAULT_TIMEOUT),
    )
