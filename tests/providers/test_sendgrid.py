"""The SendGrid adapter, talking through the real SDK to a fake SendGrid API on loopback."""
import socket
import time

import pytest

from notifier.providers import sendgrid
from notifier.providers.base import Message, PermanentError, RateLimited, SendResult, TransientError
from tests.fakes.sendgrid import FakeSendGrid

API_KEY = "SG.test-key"


@pytest.fixture(scope="module")
def fake_sendgrid():
    with FakeSendGrid(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def fake(fake_sendgrid):
    fake_sendgrid.clear()
    yield fake_sendgrid
    fake_sendgrid.clear()


@pytest.fixture
def provider(fake):
    provider = sendgrid.build(
        {
            "api_key": API_KEY,
            "from_email": "alerts@notifier.example",
            "from_name": "Notifier",
            "host": fake.url,
            "timeout": 2,
        }
    )
    yield provider
    provider.close()


def email(**overrides) -> Message:
    fields = dict(
        delivery_id=41,
        notification_id="6f1c2a5e-notif",
        channel="email",
        to="ada@example.com",
        subject="Your weekly report",
        body="Hello Ada, here is your report.",
        html_body="<p>Hello Ada, here is your <b>report</b>.</p>",
        type_key="weekly_report",
        category="marketing",
        headers={"List-Unsubscribe": "<https://notifier.example/u/abc>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    fields.update(overrides)
    return Message(**fields)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_sends_text_and_html_with_tracking_ids(fake, provider):
    fake.set_default(status=202, headers={"X-Message-Id": "sg-msg-123"})

    result = provider.send(email())

    assert result == SendResult(provider_message_id="sg-msg-123", status="sent")
    [request] = fake.requests
    assert request.method == "POST"
    assert request.path == "/v3/mail/send"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    body = request.body
    assert body["from"] == {"email": "alerts@notifier.example", "name": "Notifier"}
    assert body["subject"] == "Your weekly report"
    assert body["personalizations"] == [
        {
            "to": [{"email": "ada@example.com"}],
            "custom_args": {"notification_id": "6f1c2a5e-notif", "delivery_id": "41"},
        }
    ]
    assert body["content"] == [
        {"type": "text/plain", "value": "Hello Ada, here is your report."},
        {"type": "text/html", "value": "<p>Hello Ada, here is your <b>report</b>.</p>"},
    ]
    assert body["headers"] == {
        "X-Notification-ID": "6f1c2a5e-notif",
        "List-Unsubscribe": "<https://notifier.example/u/abc>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert body["categories"] == ["weekly_report", "marketing"]


def test_it_returns_the_message_id_sendgrid_assigned(fake, provider):
    result = provider.send(email())

    assert result.provider_message_id
    assert len(fake.requests) == 1


def test_it_sends_text_only_when_there_is_no_html(fake, provider):
    provider.send(email(html_body="", headers={}, type_key="", category=""))

    body = fake.requests[0].body
    assert body["content"] == [{"type": "text/plain", "value": "Hello Ada, here is your report."}]
    assert body["headers"] == {"X-Notification-ID": "6f1c2a5e-notif"}
    assert "categories" not in body


def test_it_asks_sendgrid_not_to_track_any_message(fake, provider):
    """notifier tracks by the type's setting itself; SendGrid's account tracking would track the rest."""
    provider.send(email(category="transactional"))

    assert fake.requests[0].body["tracking_settings"] == {
        "click_tracking": {"enable": False, "enable_text": False}, "open_tracking": {"enable": False}}


def test_it_marks_an_invalid_address_gone(fake, provider):
    fake.set_outcome("not-an-address@", status=400)

    with pytest.raises(PermanentError) as raised:
        provider.send(email(to="not-an-address@"))

    assert raised.value.target_gone is True
    assert raised.value.code == "400"
    assert "Does not contain a valid address." in str(raised.value)


def test_it_keeps_the_address_when_the_bad_request_is_about_something_else(fake, provider):
    fake.set_outcome("ada@example.com", status=400, body={
        "errors": [{"message": "The from email does not contain a valid address.", "field": "from.email",
                    "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.from"}]
    })

    with pytest.raises(PermanentError) as raised:
        provider.send(email())

    assert raised.value.target_gone is False


def test_it_fails_permanently_with_a_bad_api_key(fake):
    provider = sendgrid.build({"api_key": "SG.wrong", "from_email": "alerts@notifier.example", "host": fake.url})

    with pytest.raises(PermanentError) as raised:
        provider.send(email())

    assert raised.value.code == "401"
    assert raised.value.target_gone is False
    assert "authorization grant is invalid" in str(raised.value)


def test_it_fails_permanently_when_the_key_lacks_permission(fake, provider):
    fake.set_default(status=403)

    with pytest.raises(PermanentError) as raised:
        provider.send(email())

    assert raised.value.code == "403"
    assert raised.value.target_gone is False


def test_it_waits_until_the_rate_limit_resets(fake, provider):
    fake.set_default(status=429, headers={"X-RateLimit-Reset": str(int(time.time()) + 30)})

    with pytest.raises(RateLimited) as raised:
        provider.send(email())

    assert 25 <= raised.value.retry_after <= 31


def test_it_prefers_retry_after_when_sendgrid_sends_it(fake, provider):
    fake.set_default(status=429, headers={"Retry-After": "12"})

    with pytest.raises(RateLimited) as raised:
        provider.send(email())

    assert raised.value.retry_after == 12


@pytest.mark.parametrize("status", [500, 502, 503])
def test_it_retries_server_errors(fake, provider, status):
    fake.set_default(status=status)

    with pytest.raises(TransientError) as raised:
        provider.send(email())

    assert raised.value.code == str(status)


def test_it_retries_when_the_connection_drops(fake, provider):
    fake.set_default(status=202, drop=True)

    with pytest.raises(TransientError):
        provider.send(email())


def test_it_sends_one_email_after_another_on_one_kept_alive_connection(fake, provider):
    for number in range(3):
        provider.send(email(delivery_id=number))

    assert len({request.client for request in fake.requests}) == 1


def test_after_a_dropped_connection_the_next_email_goes_on_a_new_one(fake, provider):
    provider.send(email(delivery_id=1))
    fake.set_default(status=202, drop=True)
    with pytest.raises(TransientError):
        provider.send(email(delivery_id=2))
    fake.set_default(status=202)

    assert provider.send(email(delivery_id=3)).provider_message_id
    first, _, third = [request.client for request in fake.requests]
    assert first != third


def test_it_retries_when_sendgrid_is_too_slow(fake):
    provider = sendgrid.build(
        {"api_key": API_KEY, "from_email": "alerts@notifier.example", "host": fake.url, "timeout": 0.2}
    )
    fake.set_default(status=202, delay=1.0)

    with pytest.raises(TransientError) as raised:
        provider.send(email())

    assert raised.value.code == "connection"


def test_it_retries_when_sendgrid_is_unreachable():
    provider = sendgrid.build(
        {"api_key": API_KEY, "from_email": "alerts@notifier.example", "host": f"http://127.0.0.1:{closed_port()}"}
    )

    with pytest.raises(TransientError):
        provider.send(email())


def test_a_batch_answers_each_message_in_order(fake, provider):
    fake.set_outcome("gone@example.com", status=400)
    fake.set_outcome("busy@example.com", status=429)
    messages = [
        email(delivery_id=1, to="one@example.com"),
        email(delivery_id=2, to="gone@example.com"),
        email(delivery_id=3, to="busy@example.com"),
        email(delivery_id=4, to="four@example.com"),
    ]

    results = provider.send_batch(messages)

    assert isinstance(results[0], SendResult) and results[0].provider_message_id
    assert isinstance(results[1], PermanentError) and results[1].target_gone
    assert isinstance(results[2], RateLimited)
    assert isinstance(results[3], SendResult) and results[3].provider_message_id
    delivery_ids = sorted(r.body["personalizations"][0]["custom_args"]["delivery_id"] for r in fake.requests)
    assert delivery_ids == ["1", "2", "3", "4"]


def test_it_reports_missing_configuration():
    provider = sendgrid.build({})

    assert provider.name == "sendgrid"
    assert provider.channel == "email"
    assert provider.check() == [
        "SendGrid: no api_key configured",
        "SendGrid: no sender (from_email) configured",
    ]


def test_a_complete_configuration_has_no_problems(provider):
    assert provider.check() == []
