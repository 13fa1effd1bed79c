"""The APNs adapter against a fake APNs server speaking HTTP/2 over TLS (tests/fakes/apns.py).

Nothing is mocked: aioapns opens real TLS connections, signs real JWTs, and the fake verifies them.
"""
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest

from notifier.providers import apns
from notifier.providers.base import Message, PermanentError, RateLimited, SendResult, TransientError
from tests.fakes.apns import FakeAPNs

TOKEN = "a1" * 32
OTHER_TOKEN = "b2" * 32


@pytest.fixture(scope="module")
def fake():
    with FakeAPNs() as server:
        yield server


@pytest.fixture(autouse=True)
def clean_fake(fake):
    fake.reset()
    fake.latency = 0.0
    yield


@pytest.fixture
def make_provider(fake):
    providers = []

    def make(**overrides):
        provider = apns.build(fake.adapter_config(**{"timeout": 5, **overrides}))
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.close()


@pytest.fixture
def provider(make_provider):
    return make_provider()


def push(to=TOKEN, **fields) -> Message:
    values = dict(delivery_id=1, notification_id="2f1c0b7e-notif", channel="push", to=to, platform="ios",
                  title="New message", body="Ann: lunch?")
    values.update(fields)
    return Message(**values)


def test_it_sends_an_alert_with_apple_headers_and_payload(fake, provider):
    expires_at = datetime.now(timezone.utc) + timedelta(hours=1)

    result = provider.send(push(
        priority="high", expires_at=expires_at, collapse_key="chat-7", badge=3, sound="default",
        type_key="chat_message", data={"chat_id": "7", "sender": "ann"},
    ))

    [request] = fake.requests
    assert request.method == "POST"
    assert request.path == f"/3/device/{TOKEN}"
    assert request.headers["apns-topic"] == fake.topic
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert request.headers["apns-collapse-id"] == "chat-7"
    assert abs(int(request.headers["apns-expiration"]) - expires_at.timestamp()) <= 2
    assert request.headers["authorization"].startswith("bearer ")
    assert request.jwt_header["kid"] == fake.key_id and request.jwt_header["alg"] == "ES256"
    assert request.jwt_claims["iss"] == fake.team_id
    assert request.body == {
        "aps": {
            "alert": {"title": "New message", "body": "Ann: lunch?"},
            "badge": 3,
            "sound": "default",
            "category": "chat_message",
            "mutable-content": 1,
        },
        "notification_id": "2f1c0b7e-notif",
        "chat_id": "7",
        "sender": "ann",
    }
    assert request.status == 200
    assert result == SendResult(provider_message_id=request.apns_id, status="sent")


@pytest.mark.parametrize("priority", ["medium", "low"])
def test_it_sends_medium_and_low_priority_as_5_without_optional_headers(fake, provider, priority):
    provider.send(push(priority=priority))

    [request] = fake.requests
    assert request.headers["apns-priority"] == "5"
    assert request.headers["apns-push-type"] == "alert"
    assert "apns-expiration" not in request.headers
    assert "apns-collapse-id" not in request.headers


@pytest.mark.parametrize("platform", ["", "android", "web"])
def test_it_sends_whatever_platform_the_message_names(fake, provider, platform):
    result = provider.send(push(platform=platform))

    assert result.provider_message_id == fake.requests[0].apns_id


@pytest.mark.parametrize(
    "status, reason",
    [(410, "Unregistered"), (400, "BadDeviceToken"), (400, "DeviceTokenNotForTopic")],
)
def test_it_marks_a_dead_token_gone(fake, provider, status, reason):
    fake.set_outcome(TOKEN, status=status, reason=reason)

    with pytest.raises(PermanentError) as error:
        provider.send(push())

    assert error.value.code == reason
    assert error.value.target_gone is True


def test_it_marks_a_token_apple_finds_malformed_gone(fake, provider):
    with pytest.raises(PermanentError) as error:
        provider.send(push(to="not-a-hex-token"))

    assert fake.requests[0].reason == "BadDeviceToken"
    assert (error.value.code, error.value.target_gone) == ("BadDeviceToken", True)


@pytest.mark.parametrize(
    "status, reason",
    [(400, "BadTopic"), (400, "TopicDisallowed"), (413, "PayloadTooLarge"), (400, "BadCollapseId")],
)
def test_it_fails_other_bad_requests_permanently_but_keeps_the_device(fake, provider, status, reason):
    fake.set_outcome(TOKEN, status=status, reason=reason)

    with pytest.raises(PermanentError) as error:
        provider.send(push())

    assert error.value.code == reason
    assert error.value.target_gone is False


def test_it_reports_too_many_requests_as_rate_limited(fake, provider):
    fake.set_outcome(TOKEN, status=429, reason="TooManyRequests")

    with pytest.raises(RateLimited) as error:
        provider.send(push())

    assert error.value.code == "TooManyRequests"


@pytest.mark.parametrize("status, reason", [(500, "InternalServerError"), (503, "ServiceUnavailable")])
def test_it_reports_apple_server_errors_as_transient(fake, provider, status, reason):
    fake.set_outcome(TOKEN, status=status, reason=reason)

    with pytest.raises(TransientError) as error:
        provider.send(push())

    assert error.value.code == reason


def test_it_rejects_a_payload_over_4096_bytes_before_sending(fake, provider):
    with pytest.raises(PermanentError) as error:
        provider.send(push(body="x" * 4100))

    assert error.value.code == "PayloadTooLarge"
    assert "bytes" in str(error.value) and "4096" in str(error.value)
    assert fake.requests == []


def test_it_does_not_send_a_message_that_has_already_expired(fake, provider):
    with pytest.raises(PermanentError) as error:
        provider.send(push(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))

    assert error.value.code == "Expired"
    assert fake.requests == []


def test_it_reuses_one_tls_connection_for_many_sends(fake, provider):
    for delivery_id in range(20):
        provider.send(push(delivery_id=delivery_id))
    outcomes = provider.send_batch([push(delivery_id=100 + n) for n in range(200)])

    assert all(isinstance(outcome, SendResult) for outcome in outcomes)
    assert len(fake.requests) == 220
    assert fake.connections_opened == 1


def test_it_sends_a_batch_concurrently_with_one_outcome_per_message_in_order(fake, provider):
    fake.latency = 0.2
    fake.set_outcome(OTHER_TOKEN, status=410, reason="Unregistered")
    messages = [push(delivery_id=n, to=OTHER_TOKEN if n % 10 == 3 else TOKEN) for n in range(50)]
    too_large = push(delivery_id=50, body="x" * 5000)

    started = time.monotonic()
    outcomes = provider.send_batch(messages + [too_large])
    elapsed = time.monotonic() - started

    assert elapsed < 2.0  # 50 answers of 0.2 s each: concurrent, not one after another
    assert len(outcomes) == 51
    for message, outcome in zip(messages, outcomes):
        if message.to == OTHER_TOKEN:
            assert isinstance(outcome, PermanentError) and outcome.target_gone
        else:
            assert isinstance(outcome, SendResult)
    assert isinstance(outcomes[-1], PermanentError) and outcomes[-1].code == "PayloadTooLarge"
    assert len(fake.requests) == 50


def test_it_refreshes_the_provider_token_and_retries_once_on_expired_provider_token(fake, provider):
    provider.send(push(delivery_id=1))
    fake.expire_tokens()

    result = provider.send(push(delivery_id=2))

    first, refused, retried = fake.requests
    assert (refused.status, refused.reason) == (403, "ExpiredProviderToken")
    assert refused.headers["authorization"] == first.headers["authorization"]
    assert retried.status == 200
    assert retried.headers["authorization"] != refused.headers["authorization"]
    assert result.provider_message_id == retried.apns_id
    assert fake.connections_opened == 1


def test_it_gives_up_with_a_transient_error_when_the_fresh_token_is_refused_too(fake, provider):
    fake.fail_next(2, status=403, reason="ExpiredProviderToken")

    with pytest.raises(TransientError) as error:
        provider.send(push())

    assert error.value.code == "ExpiredProviderToken"
    assert len(fake.requests) == 2


def test_it_fails_permanently_when_apple_rejects_our_credentials(fake, make_provider):
    provider = make_provider(key_id="WRONGKEYID")

    with pytest.raises(PermanentError) as error:
        provider.send(push())

    assert fake.requests[0].reason == "InvalidProviderToken"
    assert error.value.code == "InvalidProviderToken"
    assert error.value.target_gone is False


def test_it_reports_a_slow_answer_as_a_transient_timeout(fake, make_provider):
    fake.latency = 1.0
    provider = make_provider(timeout=0.2)

    with pytest.raises(TransientError) as error:
        provider.send(push())

    assert error.value.code == "timeout"


def test_it_reports_an_unreachable_server_as_transient(fake):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    provider = apns.build(fake.adapter_config(port=port, max_connection_attempts=1, timeout=5))

    with pytest.raises(TransientError) as error:
        provider.send(push())

    assert error.value.code == "connection"
    provider.close()


def test_it_does_not_trust_a_server_outside_its_ca_file(fake):
    provider = apns.build(fake.adapter_config(ca_file="", max_connection_attempts=1, timeout=5))

    with pytest.raises(TransientError) as error:
        provider.send(push())

    assert error.value.code == "connection"
    assert fake.requests == []
    provider.close()


def test_it_reads_the_key_from_a_p8_file(fake):
    config = fake.adapter_config(key_file=fake.key_file)
    del config["key"]
    provider = apns.build(config)

    assert provider.check() == []
    assert isinstance(provider.send(push()), SendResult)
    provider.close()


def test_a_missing_key_file_fails_permanently_as_a_config_error_without_connecting(fake, tmp_path):
    config = fake.adapter_config(key_file=str(tmp_path / "AuthKey_missing.p8"), timeout=5)
    del config["key"]
    provider = apns.build(config)

    with pytest.raises(PermanentError) as error:
        provider.send(push())
    batch = provider.send_batch([push(delivery_id=1), push(delivery_id=2)])

    assert error.value.code == "config"
    assert "AuthKey_missing.p8" in str(error.value)
    assert error.value.target_gone is False
    assert [(type(o), o.code) for o in batch] == [(PermanentError, "config")] * 2
    assert fake.connections_opened == 0 and fake.requests == []
    provider.close()


@pytest.mark.parametrize("key", [
    "",
    "not a key at all",
    "-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n",
])
def test_an_empty_or_garbage_key_fails_permanently_as_a_config_error(fake, key):
    provider = apns.build(fake.adapter_config(key=key, timeout=5))

    with pytest.raises(PermanentError) as error:
        provider.send(push())

    assert error.value.code == "config"
    assert "key" in str(error.value)
    assert provider.check() != []
    assert fake.connections_opened == 0
    provider.close()


def test_a_key_that_is_not_p256_fails_permanently_as_a_config_error(fake):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    provider = apns.build(fake.adapter_config(key=rsa_key, timeout=5))

    with pytest.raises(PermanentError) as error:
        provider.send(push())

    assert error.value.code == "config"
    assert any("ES256" in problem for problem in provider.check())
    assert fake.connections_opened == 0
    provider.close()


def test_an_unreadable_ca_file_fails_permanently_as_a_config_error(fake, tmp_path):
    provider = apns.build(fake.adapter_config(ca_file=str(tmp_path / "missing-ca.pem"), timeout=5))

    with pytest.raises(PermanentError) as error:
        provider.send(push())

    assert error.value.code == "config"
    assert "missing-ca.pem" in str(error.value)
    assert fake.connections_opened == 0
    provider.close()


def test_check_names_missing_settings_and_unreadable_files(tmp_path):
    provider = apns.build({"key_file": str(tmp_path / "missing.p8"), "ca_file": str(tmp_path / "nope.pem")})

    problems = provider.check()

    assert any("key_id" in problem for problem in problems)
    assert any("team_id" in problem for problem in problems)
    assert any("topic" in problem for problem in problems)
    assert any("missing.p8" in problem for problem in problems)
    assert any("nope.pem" in problem for problem in problems)


def test_it_identifies_itself_as_the_apns_push_provider(provider):
    assert (provider.name, provider.channel) == ("apns", "push")
