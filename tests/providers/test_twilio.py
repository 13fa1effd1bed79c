"""The Twilio adapter, talking through the real SDK to a fake Twilio API on loopback."""
import base64
import socket

import pytest

from notifier.providers import twilio
from notifier.providers.base import Message, PermanentError, RateLimited, SendResult, TransientError
from tests.fakes.twilio import FakeTwilio

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "secret-token"
CALLBACK = "https://notifier.example/webhooks/twilio/status"


@pytest.fixture(scope="module")
def fake_twilio():
    with FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def fake(fake_twilio):
    fake_twilio.clear()
    yield fake_twilio
    fake_twilio.clear()


def build(fake, **overrides):
    config = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": "+15005550006",
        "status_callback_url": CALLBACK,
        "base_url": fake.url,
        "timeout": 2,
    }
    config.update(overrides)
    return twilio.build(config)


@pytest.fixture
def provider(fake):
    provider = build(fake)
    yield provider
    provider.close()


def sms(**overrides) -> Message:
    fields = dict(delivery_id=7, notification_id="n-7", channel="sms", to="+14155550100",
                  body="Your code is 123456")
    fields.update(overrides)
    return Message(**fields)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_sends_an_sms_and_returns_the_message_sid(fake, provider):
    result = provider.send(sms())

    [request] = fake.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.body == {
        "To": "+14155550100",
        "From": "+15005550006",
        "Body": "Your code is 123456",
        "StatusCallback": CALLBACK,
    }
    assert isinstance(result, SendResult)
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
    assert result.status == "sent"


def test_it_sends_through_the_messaging_service_when_configured(fake):
    provider = build(fake, messaging_service_sid="MG" + "2" * 32, status_callback_url="")

    provider.send(sms(body="Ça coûte 5 € 😀"))

    assert fake.requests[0].body == {
        "To": "+14155550100",
        "MessagingServiceSid": "MG" + "2" * 32,
        "Body": "Ça coûte 5 € 😀",
    }


def test_an_invalid_number_fails_permanently_naming_it_but_is_no_opt_out(fake, provider):
    fake.set_error("+1555", 21211)

    with pytest.raises(PermanentError) as raised:
        provider.send(sms(to="+1555"))

    assert raised.value.code == "21211"
    assert raised.value.target_gone is False  # only the recipient's STOP (21610) records an opt-out
    assert "invalid 'To' number +1555" in str(raised.value)
    assert "is not a valid phone number" in str(raised.value)


def test_it_marks_an_unsubscribed_number_gone(fake, provider):
    fake.set_error("+14155550100", 21610)

    with pytest.raises(PermanentError) as raised:
        provider.send(sms())

    assert raised.value.code == "21610"
    assert raised.value.target_gone is True


def test_it_fails_permanently_on_other_client_errors_without_dropping_the_number(fake, provider):
    fake.set_error("+14155550100", 21614)

    with pytest.raises(PermanentError) as raised:
        provider.send(sms())

    assert raised.value.code == "21614"
    assert raised.value.target_gone is False


def test_it_fails_permanently_with_bad_credentials(fake):
    provider = build(fake, auth_token="wrong")

    with pytest.raises(PermanentError) as raised:
        provider.send(sms())

    assert raised.value.code == "20003"
    assert raised.value.target_gone is False


def test_it_is_rate_limited_on_twilio_error_20429(fake, provider):
    fake.set_error("+14155550100", 20429)

    with pytest.raises(RateLimited) as raised:
        provider.send(sms())

    assert raised.value.code == "20429"


def test_it_is_rate_limited_on_a_bare_http_429(fake, provider):
    fake.set_outcome("+14155550100", status=429, body="slow down")

    with pytest.raises(RateLimited):
        provider.send(sms())


@pytest.mark.parametrize("status", [500, 503])
def test_it_retries_server_errors(fake, provider, status):
    fake.set_default(status=status)

    with pytest.raises(TransientError):
        provider.send(sms())


def test_it_retries_when_the_connection_drops(fake, provider):
    fake.set_default(status=201, drop=True)

    with pytest.raises(TransientError) as raised:
        provider.send(sms())

    assert raised.value.code == "connection"


def test_it_retries_when_twilio_is_too_slow(fake):
    provider = build(fake, timeout=0.2)
    fake.set_default(status=201, delay=1.0)

    with pytest.raises(TransientError) as raised:
        provider.send(sms())

    assert raised.value.code == "connection"


def test_it_retries_when_twilio_is_unreachable(fake):
    provider = build(fake, base_url=f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(TransientError):
        provider.send(sms())


def test_it_refuses_a_body_above_max_segments_before_sending(fake):
    provider = build(fake, max_segments=2)
    body = "a" * 307  # three GSM-7 segments

    with pytest.raises(PermanentError) as raised:
        provider.send(sms(body=body))

    assert "3 segments" in str(raised.value)
    assert raised.value.code == "too_many_segments"
    assert raised.value.target_gone is False
    assert fake.requests == []


def test_it_allows_ten_segments_by_default(fake, provider):
    ten = "a" * 153 * 10
    eleven = ten + "a"

    provider.send(sms(body=ten))
    with pytest.raises(PermanentError, match="11 segments"):
        provider.send(sms(body=eleven))

    assert len(fake.requests) == 1


def test_a_batch_answers_each_message_in_order(fake, provider):
    fake.set_error("+14155550002", 21610)
    fake.set_error("+14155550003", 20429)
    numbers = ["+14155550001", "+14155550002", "+14155550003", "+14155550004"]

    results = provider.send_batch([sms(delivery_id=i, to=n) for i, n in enumerate(numbers)])

    assert isinstance(results[0], SendResult)
    assert isinstance(results[1], PermanentError) and results[1].target_gone
    assert isinstance(results[2], RateLimited)
    assert isinstance(results[3], SendResult)
    assert sorted(r.body["To"] for r in fake.requests) == numbers


def test_it_ignores_twilio_environment_variables(fake, monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "9" * 32)
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    provider = build(fake, account_sid="", auth_token="")

    with pytest.raises(PermanentError) as raised:
        provider.send(sms())

    assert raised.value.code == "20003"
    assert "Authorization" not in fake.requests[0].headers


def test_it_reports_missing_configuration():
    provider = twilio.build({"max_segments": -1})

    assert (provider.name, provider.channel) == ("twilio", "sms")
    assert provider.check() == [
        "Twilio: no account_sid configured",
        "Twilio: no auth_token configured",
        "Twilio: no sender (from_number or messaging_service_sid) configured",
        "Twilio: max_segments must be at least 1, not -1",
    ]


def test_a_complete_configuration_has_no_problems(provider):
    assert provider.check() == []
