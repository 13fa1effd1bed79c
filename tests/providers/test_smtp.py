"""The SMTP adapter, talking through Django's SMTP backend to a fake SMTP server on loopback."""
import socket
import time

import pytest

from notifier.providers import smtp
from notifier.providers.base import Message, PermanentError, SendResult, TransientError
from tests.fakes.smtp import FakeSMTP

SENDER = "Notifier <alerts@notifier.example>"

# The fake allows AUTH without TLS on purpose (loopback only); aiosmtpd warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@pytest.fixture(scope="module")
def fake_smtp():
    with FakeSMTP() as fake:
        yield fake


@pytest.fixture
def fake(fake_smtp):
    fake_smtp.clear()
    yield fake_smtp
    fake_smtp.clear()


def build(server, **overrides):
    config = {"host": server.host, "port": server.port, "from_email": SENDER, "timeout": 2}
    config.update(overrides)
    return smtp.build(config)


@pytest.fixture
def provider(fake):
    provider = build(fake)
    yield provider
    provider.close()


def email(**overrides) -> Message:
    fields = dict(
        delivery_id=12,
        notification_id="b7e1-notif",
        channel="email",
        to="ada@example.com",
        subject="Your weekly report",
        body="Hello Ada, here is your report.",
        html_body="<p>Hello Ada, here is your <b>report</b>.</p>",
        headers={"List-Unsubscribe": "<https://notifier.example/u/abc>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    fields.update(overrides)
    return Message(**fields)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_sends_text_and_html_with_a_message_id(fake, provider):
    result = provider.send(email())

    [received] = fake.messages
    mail = received.message
    assert received.mail_from == "alerts@notifier.example"
    assert received.rcpt_tos == ["ada@example.com"]
    assert mail["From"] == SENDER
    assert mail["To"] == "ada@example.com"
    assert mail["Subject"] == "Your weekly report"
    assert mail["X-Notification-ID"] == "b7e1-notif"
    assert mail["List-Unsubscribe"] == "<https://notifier.example/u/abc>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.get_content_type() == "multipart/alternative"
    assert mail.get_body(("plain",)).get_content().strip() == "Hello Ada, here is your report."
    assert mail.get_body(("html",)).get_content().strip() == "<p>Hello Ada, here is your <b>report</b>.</p>"
    assert result == SendResult(provider_message_id=mail["Message-ID"], status="sent")
    assert result.provider_message_id.startswith("<") and result.provider_message_id.endswith(
        "@notifier.example>")


def test_every_message_gets_its_own_message_id(fake, provider):
    first = provider.send(email())
    second = provider.send(email())

    assert first.provider_message_id != second.provider_message_id


def test_it_sends_text_only_when_there_is_no_html(fake, provider):
    provider.send(email(html_body="", headers={}))

    mail = fake.messages[0].message
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().strip() == "Hello Ada, here is your report."
    assert mail["X-Notification-ID"] == "b7e1-notif"


@pytest.mark.parametrize("reply", [
    "550 5.1.1 No such user",
    "551 5.1.6 User not local; please try <ada@elsewhere.example>",
    "553 5.1.3 Mailbox name not allowed",
    "550 Requested action not taken: mailbox unavailable",
    "550 5.2.1 Mailbox disabled",
])
def test_it_marks_an_unknown_mailbox_gone(fake, provider, reply):
    fake.set_outcome("ada@example.com", reply)

    with pytest.raises(PermanentError) as raised:
        provider.send(email())

    assert raised.value.target_gone is True
    assert raised.value.code == reply[:3]
    assert reply[4:] in str(raised.value)
    assert fake.messages == []


@pytest.mark.parametrize("reply", [
    "550 5.7.1 Message refused as spam",
    "554 5.7.1 Relay access denied",
    "552 5.2.2 Mailbox full",
])
def test_it_keeps_the_address_when_a_refusal_is_not_about_the_mailbox(fake, provider, reply):
    fake.set_outcome("ada@example.com", reply)

    with pytest.raises(PermanentError) as raised:
        provider.send(email())

    assert raised.value.target_gone is False


def test_it_retries_a_deferred_recipient(fake, provider):
    fake.set_outcome("ada@example.com", "451 4.3.0 Try again later")

    with pytest.raises(TransientError) as raised:
        provider.send(email())

    assert raised.value.code == "451"


def test_it_fails_permanently_when_the_message_is_refused_after_data(fake, provider):
    fake.set_outcome("ada@example.com", "552 5.3.4 Message too big for system", stage="data")

    with pytest.raises(PermanentError) as raised:
        provider.send(email())

    assert raised.value.code == "552"
    assert raised.value.target_gone is False


def test_it_retries_when_the_message_is_deferred_after_data(fake, provider):
    fake.set_outcome("ada@example.com", "451 4.3.0 Try again later", stage="data")

    with pytest.raises(TransientError):
        provider.send(email())


def test_it_retries_when_the_server_is_unreachable():
    provider = smtp.build({"host": "127.0.0.1", "port": closed_port(), "from_email": SENDER, "timeout": 2})

    with pytest.raises(TransientError) as raised:
        provider.send(email())

    assert raised.value.code == "connection"


def test_it_retries_when_the_server_is_too_slow(fake):
    provider = build(fake, timeout=0.3)
    fake.set_default(delay=1.5)

    with pytest.raises(TransientError) as raised:
        provider.send(email())

    assert raised.value.code == "connection"


def test_it_logs_in_when_the_server_requires_it():
    with FakeSMTP(credentials=("mailer", "s3cret")) as server:
        provider = build(server, username="mailer", password="s3cret")

        provider.send(email())

        assert len(server.messages) == 1


def test_it_fails_permanently_with_a_wrong_password():
    with FakeSMTP(credentials=("mailer", "s3cret")) as server:
        provider = build(server, username="mailer", password="wrong")

        with pytest.raises(PermanentError) as raised:
            provider.send(email())

        assert raised.value.code == "535"
        assert raised.value.target_gone is False
        assert server.messages == []


def test_a_batch_goes_over_one_connection(fake, provider):
    fake.set_outcome("gone@example.com", "550 5.1.1 No such user")
    messages = [
        email(delivery_id=1, to="one@example.com"),
        email(delivery_id=2, to="gone@example.com"),
        email(delivery_id=3, to="three@example.com"),
    ]

    results = provider.send_batch(messages)

    assert isinstance(results[0], SendResult)
    assert isinstance(results[1], PermanentError) and results[1].target_gone
    assert isinstance(results[2], SendResult)
    received = fake.messages
    assert [m.rcpt_tos for m in received] == [["one@example.com"], ["three@example.com"]]
    assert received[0].peer == received[1].peer
    assert [m.message["Message-ID"] for m in received] == [results[0].provider_message_id,
                                                            results[2].provider_message_id]


def test_a_batch_reconnects_after_the_server_drops_the_connection(fake, provider):
    fake.set_outcome("two@example.com", "421 4.3.2 Service shutting down")
    messages = [email(delivery_id=i, to=f"{name}@example.com") for i, name in enumerate(["one", "two", "three"])]

    results = provider.send_batch(messages)

    assert isinstance(results[0], SendResult)
    assert isinstance(results[1], TransientError) and results[1].code == "421"
    assert isinstance(results[2], SendResult)
    first, third = fake.messages
    assert first.peer != third.peer


def test_a_batch_fails_at_once_when_the_server_is_unreachable():
    provider = smtp.build({"host": "127.0.0.1", "port": closed_port(), "from_email": SENDER, "timeout": 2})
    started = time.monotonic()

    results = provider.send_batch([email(delivery_id=i) for i in range(50)])

    assert len(results) == 50
    assert all(isinstance(r, TransientError) and r.code == "connection" for r in results)
    assert time.monotonic() - started < 2


def test_it_refuses_to_send_with_both_tls_and_ssl(fake):
    provider = build(fake, use_tls=True, use_ssl=True)

    with pytest.raises(PermanentError) as raised:
        provider.send(email())

    assert raised.value.code == "config"
    assert fake.messages == []


@pytest.mark.parametrize("from_email", ["", None])
def test_it_refuses_to_send_without_a_sender_rather_than_use_django_default_from_email(fake, from_email):
    provider = build(fake, from_email=from_email)

    with pytest.raises(PermanentError) as raised:
        provider.send(email())
    batch = provider.send_batch([email(delivery_id=1), email(delivery_id=2)])

    assert raised.value.code == "config"
    assert "from_email" in str(raised.value) and "EMAIL_FROM" in str(raised.value)
    assert [(type(r), r.code) for r in batch] == [(PermanentError, "config")] * 2
    assert fake.messages == []


def test_it_reports_configuration_problems():
    provider = smtp.build({"use_tls": "true", "use_ssl": True, "username": "mailer"})

    assert (provider.name, provider.channel) == ("smtp", "email")
    assert provider.port == 465
    assert provider.check() == [
        "SMTP: no sender (from_email) configured",
        "SMTP: use_tls and use_ssl are mutually exclusive",
        "SMTP: username and password must be set together",
    ]


def test_a_complete_configuration_has_no_problems(provider):
    assert provider.check() == []
