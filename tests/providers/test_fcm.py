"""The FCM adapter against a fake FCM v1 API and OAuth token endpoint (tests/fakes/fcm.py).

Nothing is mocked: firebase-admin signs a real JWT assertion with the throwaway service account, fetches
an access token from the fake's token_uri, and posts each message over httpx to the fake.
"""
import json
import socket
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone

import pytest

from notifier.providers import fcm
from notifier.providers.base import Message, PermanentError, RateLimited, SendResult, TransientError
from tests.fakes.fcm import FakeFCM, make_service_account

TOKEN = "fcm-token-1:APA91bH"
OTHER_TOKEN = "fcm-token-2:APA91bH"


@pytest.fixture(scope="module")
def fake():
    with FakeFCM() as server:
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
        provider = fcm.build(fake.adapter_config(**overrides))
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.close()


@pytest.fixture
def provider(make_provider):
    return make_provider()


def push(to=TOKEN, **fields) -> Message:
    values = dict(delivery_id=1, notification_id="2f1c0b7e-notif", channel="push", to=to, platform="android",
                  title="New message", body="Ann: lunch?")
    values.update(fields)
    return Message(**values)


def test_it_sends_a_notification_with_string_data_and_android_options(fake, provider):
    result = provider.send(push(
        priority="high", expires_at=datetime.now(timezone.utc) + timedelta(hours=1), collapse_key="chat-7",
        data={"chat_id": "7", "unread": 3, "muted": False},
    ))

    [token_request] = fake.token_requests
    assert token_request.body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert token_request.status == 200
    [request] = fake.requests
    assert request.path == f"/v1/projects/{fake.project_id}/messages:send"
    assert request.headers["authorization"] == f"Bearer {token_request.response['access_token']}"
    message = request.message
    assert message["token"] == TOKEN
    assert message["notification"] == {"title": "New message", "body": "Ann: lunch?"}
    assert message["data"] == {"chat_id": "7", "unread": "3", "muted": "false", "notification_id": "2f1c0b7e-notif"}
    assert message["android"]["priority"] == "high"
    assert message["android"]["collapse_key"] == "chat-7"
    assert 3598 <= float(message["android"]["ttl"].rstrip("s")) <= 3600
    assert "apns" not in message and "webpush" not in message
    assert result == SendResult(provider_message_id=request.response["name"], status="sent")
    assert result.provider_message_id.startswith(f"projects/{fake.project_id}/messages/")


@pytest.mark.parametrize("priority", ["medium", "low"])
def test_it_sends_normal_android_priority_below_high(fake, provider, priority):
    provider.send(push(priority=priority))

    assert fake.requests[0].message["android"] == {"priority": "normal"}


def test_it_sends_sound_and_badge_in_the_android_notification(fake, provider):
    provider.send(push(collapse_key="order-7", sound="default", badge=4))

    android = fake.requests[0].message["android"]
    assert android["collapse_key"] == "order-7"
    assert android["notification"] == {"sound": "default", "notification_count": 4}


def test_it_adds_an_apns_block_for_ios_devices(fake, provider):
    expires_at = datetime.now(timezone.utc) + timedelta(minutes=10)

    provider.send(push(platform="ios", priority="medium", expires_at=expires_at, collapse_key="chat-7",
                       badge=2, sound="default", type_key="chat_message"))

    apns = fake.requests[0].message["apns"]
    assert apns["headers"]["apns-priority"] == "5"
    assert apns["headers"]["apns-push-type"] == "alert"
    assert apns["headers"]["apns-collapse-id"] == "chat-7"
    assert abs(int(apns["headers"]["apns-expiration"]) - expires_at.timestamp()) <= 2
    assert apns["payload"]["aps"] == {"badge": 2, "sound": "default", "category": "chat_message", "mutable-content": 1}


def test_it_adds_a_webpush_block_for_browsers(fake, provider):
    provider.send(push(platform="web", priority="high", action_url="https://app.example.com/chats/7",
                       expires_at=datetime.now(timezone.utc) + timedelta(seconds=120)))

    webpush = fake.requests[0].message["webpush"]
    assert webpush["headers"]["Urgency"] == "high"
    assert 118 <= int(webpush["headers"]["TTL"]) <= 120
    assert webpush["notification"] == {"title": "New message", "body": "Ann: lunch?"}
    assert webpush["fcm_options"] == {"link": "https://app.example.com/chats/7"}
    assert fake.requests[0].message["data"]["action_url"] == "https://app.example.com/chats/7"


@pytest.mark.parametrize("platform", ["", "ios", "android", "web", "something-new"])
def test_it_sends_whatever_platform_the_message_names(fake, provider, platform):
    result = provider.send(push(platform=platform))

    assert result.provider_message_id == fake.requests[0].response["name"]


@pytest.mark.parametrize(
    "error, code",
    [("UNREGISTERED", "UNREGISTERED"), ("INVALID_TOKEN", "INVALID_ARGUMENT"),
     ("SENDER_ID_MISMATCH", "SENDER_ID_MISMATCH")],
)
def test_it_marks_a_dead_token_gone(fake, provider, error, code):
    fake.set_outcome(TOKEN, error)

    with pytest.raises(PermanentError) as raised:
        provider.send(push())

    assert raised.value.code == code
    assert raised.value.target_gone is True


def test_it_fails_an_invalid_message_permanently_but_keeps_the_device(fake, provider):
    fake.set_outcome(TOKEN, "INVALID_ARGUMENT")

    with pytest.raises(PermanentError) as raised:
        provider.send(push())

    assert raised.value.code == "INVALID_ARGUMENT"
    assert raised.value.target_gone is False


def test_it_fails_permanently_on_a_third_party_auth_error(fake, provider):
    fake.set_outcome(TOKEN, "THIRD_PARTY_AUTH_ERROR")

    with pytest.raises(PermanentError) as raised:
        provider.send(push())

    assert raised.value.code == "THIRD_PARTY_AUTH_ERROR"
    assert raised.value.target_gone is False


def test_it_reports_quota_exceeded_as_rate_limited_with_retry_after(fake, provider):
    fake.set_outcome(TOKEN, "QUOTA_EXCEEDED", retry_after=30)
    fake.set_outcome(OTHER_TOKEN, "QUOTA_EXCEEDED")

    with pytest.raises(RateLimited) as with_header:
        provider.send(push())
    with pytest.raises(RateLimited) as without_header:
        provider.send(push(to=OTHER_TOKEN))

    assert (with_header.value.code, with_header.value.retry_after) == ("QUOTA_EXCEEDED", 30)
    assert without_header.value.retry_after is None


def test_it_reports_a_bare_http_429_as_rate_limited_with_retry_after(fake, provider):
    fake.set_outcome(TOKEN, "HTTP_429", retry_after=12)

    with pytest.raises(RateLimited) as raised:
        provider.send(push())

    assert raised.value.retry_after == 12
    assert fake.requests[0].status == 429


@pytest.mark.parametrize("error", ["UNAVAILABLE", "INTERNAL"])
def test_it_reports_fcm_server_errors_as_transient(fake, provider, error):
    fake.set_outcome(TOKEN, error)

    with pytest.raises(TransientError) as raised:
        provider.send(push())

    assert raised.value.code == error
    assert len(fake.requests) == 1  # retries=0 in the test config: the task, not the SDK, retries


def test_it_lets_firebase_admin_retry_a_server_error_when_configured(fake, make_provider):
    provider = make_provider(retries=1)
    fake.fail_next(1, "UNAVAILABLE")

    result = provider.send(push())

    assert [request.status for request in fake.requests] == [503, 200]
    assert result.provider_message_id == fake.requests[1].response["name"]


def test_it_splits_600_messages_into_calls_of_at_most_500_with_one_outcome_each(fake, make_provider):
    # firebase-admin raises ValueError for more than 500 messages per call: getting 600 outcomes at all
    # shows the adapter split them (into chunks of its concurrency). Allow for a slow test machine.
    provider = make_provider(timeout=30)
    messages = [push(delivery_id=n, to=f"token-{n}") for n in range(600)]
    gone = {f"token-{n}" for n in (3, 499, 500, 599)}
    for token in gone:
        fake.set_outcome(token, "UNREGISTERED")
    fake.set_outcome("token-42", "QUOTA_EXCEEDED", retry_after=5)

    outcomes = provider.send_batch(messages)

    assert len(outcomes) == 600
    for message, outcome in zip(messages, outcomes):
        if message.to in gone:
            assert isinstance(outcome, PermanentError) and outcome.target_gone, message.to
        elif message.to == "token-42":
            assert isinstance(outcome, RateLimited) and outcome.retry_after == 5
        else:
            assert isinstance(outcome, SendResult), message.to
    assert sorted(request.target for request in fake.requests) == sorted(message.to for message in messages)
    assert len({outcome.provider_message_id for outcome in outcomes if isinstance(outcome, SendResult)}) == 595
    assert len(fake.token_requests) == 1


def test_it_sends_a_batch_concurrently(fake, provider):
    fake.latency = 0.2

    started = time.monotonic()
    outcomes = provider.send_batch([push(delivery_id=n, to=f"token-{n}") for n in range(40)])

    assert time.monotonic() - started < 2.0  # 40 answers of 0.2 s each
    assert all(isinstance(outcome, SendResult) for outcome in outcomes)


def test_it_sends_on_threads_it_keeps_not_new_ones_per_batch(fake, make_provider):
    provider = make_provider(concurrency=8)

    def sending_threads() -> set:
        return {t.ident for t in threading.enumerate() if t.name.startswith("fcm-send")}

    provider.send_batch([push(delivery_id=n, to=f"token-{n}") for n in range(20)])
    first = sending_threads()
    for _ in range(3):
        provider.send_batch([push(delivery_id=n, to=f"token-{n}") for n in range(20)])
    later = sending_threads()

    # The pool starts a thread only when none is idle, so a later batch may add one, never more than 8 in all;
    # what matters is that the first batch's threads are still the ones sending, not replaced per batch.
    assert 0 < len(first) <= 8
    assert first <= later
    assert len(later) <= 8
    provider.close()


def test_it_reuses_its_access_token_and_connections(fake, provider):
    for n in range(10):
        provider.send(push(delivery_id=n))

    assert len(fake.token_requests) == 1
    assert fake.connections_opened <= 2  # one for the token endpoint, one kept alive for the sends


def test_it_fetches_a_new_access_token_when_google_rejects_the_old_one(fake, provider):
    provider.send(push(delivery_id=1))
    fake.revoke_access_tokens()

    result = provider.send(push(delivery_id=2))

    assert [request.status for request in fake.requests] == [200, 401, 200]
    assert len(fake.token_requests) == 2
    assert result.provider_message_id == fake.requests[-1].response["name"]


def test_it_fails_permanently_when_the_token_endpoint_refuses_the_service_account(fake, make_provider):
    impostor = make_service_account(fake.project_id, fake.token_uri)  # same account name, another key
    provider = make_provider(credentials=impostor)

    with pytest.raises(PermanentError) as raised:
        provider.send(push())

    assert raised.value.code == "auth"
    assert fake.token_requests[0].response["error"] == "invalid_grant"
    assert fake.requests == []


def test_it_reports_an_unreachable_server_as_transient(fake, make_provider):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    provider = make_provider(endpoint=f"http://127.0.0.1:{port}")

    with pytest.raises(TransientError) as raised:
        provider.send(push())

    assert raised.value.code == "UNAVAILABLE"


def test_it_reports_a_slow_answer_as_transient(fake, make_provider):
    fake.latency = 1.0
    provider = make_provider(timeout=0.2)

    with pytest.raises(TransientError) as raised:
        provider.send(push())

    assert raised.value.code == "DEADLINE_EXCEEDED"


def test_it_does_not_send_a_message_that_has_already_expired(fake, provider):
    with pytest.raises(PermanentError) as raised:
        provider.send(push(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))

    assert raised.value.code == "Expired"
    assert fake.requests == []


def test_it_sends_registration_tokens_without_a_deprecation_warning(fake, provider):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        provider.send(push())

    assert [w for w in caught if issubclass(w.category, DeprecationWarning) and "token" in str(w.message)] == []
    assert fake.requests[0].message["token"] == TOKEN


def test_it_sends_to_firebase_installation_ids_when_configured(fake, make_provider):
    provider = make_provider(target="fid")

    provider.send(push(to="cHJvamVjdC1maWQtMQ"))

    assert fake.requests[0].message["fid"] == "cHJvamVjdC1maWQtMQ"
    assert "token" not in fake.requests[0].message


def test_two_adapters_use_separate_firebase_apps(fake, make_provider, tmp_path):
    credentials_file = tmp_path / "service-account.json"
    credentials_file.write_text(json.dumps(fake.service_account))
    from_file = make_provider(credentials=None, credentials_file=str(credentials_file))
    from_json_text = make_provider(credentials=json.dumps(fake.service_account))

    from_file.send(push(delivery_id=1))
    from_file.close()
    from_json_text.send(push(delivery_id=2))

    assert [request.status for request in fake.requests] == [200, 200]


def test_check_names_missing_and_unreadable_credentials(tmp_path):
    assert fcm.build({}).check() == [
        "FCM: credentials_file or credentials (the service account JSON) is missing"
    ]
    [problem] = fcm.build({"credentials_file": str(tmp_path / "missing.json")}).check()
    assert "missing.json" in problem
    problems = fcm.build({"credentials": {"type": "authorized_user"}, "target": "email"}).check()
    assert any("service account" in problem for problem in problems)
    assert any("private_key" in problem for problem in problems)
    assert any("project_id" in problem for problem in problems)
    assert any("target" in problem for problem in problems)


def test_check_accepts_the_fakes_service_account(fake, provider):
    assert provider.check() == []


def test_it_identifies_itself_as_the_fcm_push_provider(provider):
    assert (provider.name, provider.channel) == ("fcm", "push")


def test_a_rate_limit_returns_at_once_and_leaves_the_wait_to_the_queue(fake, make_provider):
    # urllib3 honours Retry-After on 429 by sleeping; a worker must not sleep for the provider.
    provider = make_provider(retries=1)
    fake.set_outcome(TOKEN, "QUOTA_EXCEEDED", retry_after=30)

    started = time.monotonic()
    with pytest.raises(RateLimited) as raised:
        provider.send(push())

    assert time.monotonic() - started < 5
    assert raised.value.retry_after == 30
    assert len(fake.requests) == 1
