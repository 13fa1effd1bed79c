"""A fake SMTP server on loopback (aiosmtpd in a background thread), recording what it accepts.

    with FakeSMTP() as fake:                                   # start() / stop() also work
        fake.set_outcome("gone@example.com", "550 5.1.1 No such user")            # refused at RCPT TO
        fake.set_outcome("later@example.com", "451 4.3.0 Try again later")
        fake.set_outcome("big@example.com", "552 5.3.4 Message too big", stage="data")
        fake.set_default(delay=0.05)                           # every other recipient: accepted, slowly
        ... point the SMTP client at fake.host / fake.port ...
        received = fake.messages[0]                            # ReceivedMail
        received.mail_from, received.rcpt_tos, received.peer, received.message["X-Notification-ID"]
        received.message.get_body(("html",)).get_content()     # an email.message.EmailMessage
        fake.clear()                                           # forget messages and outcomes

A reply is any SMTP reply line; "421 …" also makes the client drop the connection, as a real server does
when it shuts down. With `credentials=("user", "password")` the server requires AUTH (PLAIN or LOGIN,
allowed without TLS on loopback) and answers a wrong password with "535 5.7.8 Authentication credentials
invalid". TLS (STARTTLS or implicit) is not offered.

Standalone, for benchmarks:
    python -m tests.fakes.smtp --port 2525 [--latency 0.05] [--username u --password p]
"""
from __future__ import annotations

import argparse
import asyncio
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True)
class ReceivedMail:
    """One message the fake accepted."""

    mail_from: str
    rcpt_tos: list
    message: EmailMessage  # parsed with email.policy.default
    raw: bytes
    peer: tuple  # the client's (host, port): messages sent over one connection share it


@dataclass(frozen=True)
class SMTPOutcome:
    reply: str | None = None  # None: accept ("250 …")
    stage: str = "rcpt"  # "rcpt" (answer RCPT TO) or "data" (accept the recipient, answer DATA)
    delay: float = 0.0


class _EphemeralPortController(Controller):
    """aiosmtpd's Controller checks readiness by connecting to its port, so learn the port the OS picked
    for port 0 before it tries."""

    def _trigger_server(self):
        if self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class FakeSMTP:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0,
                 credentials: tuple[str, str] | None = None):
        self.host = host
        self.latency = latency
        self.credentials = credentials
        self._requested_port = port
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._outcomes: dict[str, SMTPOutcome] = {}
        self._default = SMTPOutcome()
        self._controller: _EphemeralPortController | None = None

    # ----- lifecycle

    def start(self) -> "FakeSMTP":
        options = {}
        if self.credentials:
            options = dict(authenticator=self._authenticate, auth_required=True, auth_require_tls=False)
        self._controller = _EphemeralPortController(
            _Handler(self), hostname=self.host, port=self._requested_port, **options
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def port(self) -> int:
        return self._controller.port

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    # ----- programming and inspection

    def set_outcome(self, to: str, reply: str | None = None, stage: str = "rcpt", delay: float = 0.0) -> None:
        """Answer mail for `to` with `reply` (e.g. "550 5.1.1 No such user") at RCPT TO or at DATA."""
        if stage not in ("rcpt", "data"):
            raise ValueError("stage is 'rcpt' or 'data'")
        with self._lock:
            self._outcomes[to.lower()] = SMTPOutcome(reply, stage, delay)

    def set_default(self, reply: str | None = None, stage: str = "rcpt", delay: float = 0.0) -> None:
        """Answer mail for recipients without their own outcome this way (default: accept)."""
        with self._lock:
            self._default = SMTPOutcome(reply, stage, delay)

    @property
    def messages(self) -> list[ReceivedMail]:
        """A copy of the messages accepted so far, oldest first."""
        with self._lock:
            return list(self._messages)

    requests = messages  # the same name the HTTP fakes use

    def clear(self) -> None:
        """Forget the messages received and every programmed outcome."""
        with self._lock:
            self._messages.clear()
            self._outcomes.clear()
            self._default = SMTPOutcome()

    # ----- internals

    def _outcome_for(self, address: str) -> SMTPOutcome:
        with self._lock:
            return self._outcomes.get(address.lower(), self._default)

    def _record(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self.credentials
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False)


class _Handler:
    """aiosmtpd hooks: programmed replies at RCPT TO and DATA, recording of accepted messages."""

    def __init__(self, fake: FakeSMTP):
        self.fake = fake

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        outcome = self.fake._outcome_for(address)
        if outcome.stage == "rcpt" and outcome.reply:
            return outcome.reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        outcomes = [self.fake._outcome_for(address) for address in envelope.rcpt_tos]
        delay = self.fake.latency + max((o.delay for o in outcomes), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        for outcome in outcomes:
            if outcome.stage == "data" and outcome.reply:
                return outcome.reply
        raw = envelope.original_content or envelope.content
        self.fake._record(ReceivedMail(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            message=message_from_bytes(raw, policy=policy.default),
            raw=raw,
            peer=tuple(session.peer),
        ))
        return "250 2.0.0 OK: queued"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake SMTP server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before answering DATA")
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args(argv)
    credentials = (args.username, args.password or "") if args.username else None
    fake = FakeSMTP(host=args.host, port=args.port, latency=args.latency, credentials=credentials)
    fake.start()
    print(f"FakeSMTP listening on {fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
