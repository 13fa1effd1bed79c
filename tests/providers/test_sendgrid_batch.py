"""SendGrid batches for low-priority email: up to 1,000 personalizations in one request, through the real SDK
to the fake SendGrid, which applies each personalization's substitutions and records what every recipient
receives."""
import secrets

import pytest
import sendgrid as sendgrid_sdk

from notifier.channels.base import send_guarded
from notifier.providers import sendgrid
from notifier.providers.base import Message, PermanentError, RateLimited, SendResult, TransientError
from notifier.providers.circuit import circuit_states
from tests.fakes.sendgrid import FakeSendGrid

API_KEY = "SG.test-key"

SHARED_TEXT = "This week in the shop: autumn jackets, warm boots and a scarf for every budget. " * 20


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
    provider = sendgrid.build({"api_key": API_KEY, "from_email": "news@notifier.example", "from_name": "Shop",
                               "host": fake.url, "timeout": 10})
    yield provider
    provider.close()


def campaign_email(number: int, **overrides) -> Message:
    """What the email channel hands over for one campaign delivery: rendered for its recipient, with its
    own greeting, tracked links, open pixel and unsubscribe link and header."""
    unsubscribe = f"https://notifier.example/u/{secrets.token_urlsafe(24)}"
    links = "".join(f'<p><a href="https://notifier.example/c/{secrets.token_urlsafe(32)}">Offer {k}</a></p>'
                    for k in range(3))
    fields = dict(
        delivery_id=number,
        notification_id=f"notif-{number}",
        channel="email",
        to=f"user{number}@example.com",
        subject="Autumn sale",
        body=f"Hello User {number},\n{SHARED_TEXT}\nUnsubscribe: {unsubscribe}",
        html_body=(f"<html><body><h1>Hello User {number},</h1><p>{SHARED_TEXT}</p>{links}"
                   f'<p><a href="{unsubscribe}">Unsubscribe</a></p>'
                   f'<img src="https://notifier.example/o/{secrets.token_urlsafe(20)}.gif" alt=""></body></html>'),
        priority="low",
        type_key="autumn_sale",
        category="marketing",
        headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    fields.update(overrides)
    return Message(**fields)


def received_as_sent(fake, message: Message):
    """The one mail the fake accepted for this message, checked to be exactly what it was rendered as."""
    [mail] = fake.accepted_for(message.delivery_id)
    assert mail.email == message.to
    assert mail.subject == message.subject
    assert mail.text == message.body
    assert mail.html == message.html_body
    assert mail.headers == {"X-Notification-ID": message.notification_id, **message.headers}
    assert mail.custom_args == {"notification_id": message.notification_id, "delivery_id": str(message.delivery_id)}
    assert mail.categories == ["autumn_sale", "marketing"]
    return mail


def test_a_thousand_low_priority_emails_go_out_in_one_request_each_recipient_getting_its_own(fake, provider):
    messages = [campaign_email(n) for n in range(1, 1001)]

    results = provider.send_batch(messages)

    [request] = fake.requests
    assert len(request.body["personalizations"]) == 1000
    assert all(isinstance(r, SendResult) for r in results)
    assert len({r.provider_message_id for r in results}) == 1
    for message, result in zip(messages, results):
        assert received_as_sent(fake, message).message_id == result.provider_message_id
    # What they share is in the request once, not a thousand times.
    assert request.raw.count(SHARED_TEXT[:80].encode()) == 2 * 20  # the text part and the HTML part
    assert len(request.raw) < sum(len(m.html_body) + len(m.body) for m in messages) / 4


def test_the_shared_parts_are_in_the_content_and_the_subject_and_headers_all_share_at_the_top(fake, provider):
    messages = [campaign_email(n) for n in range(1, 4)]

    provider.send_batch(messages)

    body = fake.requests[0].body
    assert body["subject"] == "Autumn sale"
    assert body["headers"] == {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert body["tracking_settings"] == {"click_tracking": {"enable": False, "enable_text": False},
                                         "open_tracking": {"enable": False}}
    [text, html] = body["content"]
    assert (text["type"], html["type"]) == ("text/plain", "text/html")
    assert SHARED_TEXT in text["value"] and SHARED_TEXT in html["value"]
    first = body["personalizations"][0]
    assert set(first) == {"to", "headers", "custom_args", "substitutions"}
    assert set(first["headers"]) == {"X-Notification-ID", "List-Unsubscribe"}
    assert all(tag in text["value"] + html["value"] for tag in first["substitutions"])
    values = "".join(first["substitutions"].values())
    assert messages[0].headers["List-Unsubscribe"].strip("<>") in values  # its own link, in its own substitutions
    assert SHARED_TEXT[:80] not in values


def test_identical_emails_share_everything_but_their_own_subject(fake, provider):
    messages = [campaign_email(n, subject=f"News for #{n}", body="Same for all.", html_body="<p>Same for all.</p>",
                               headers={}) for n in range(1, 6)]

    provider.send_batch(messages)

    [request] = fake.requests
    assert request.body["content"] == [{"type": "text/plain", "value": "Same for all."},
                                       {"type": "text/html", "value": "<p>Same for all.</p>"}]
    assert "subject" not in request.body
    assert [p["subject"] for p in request.body["personalizations"]] == [f"News for #{n}" for n in range(1, 6)]
    assert all("substitutions" not in p for p in request.body["personalizations"])
    for message in messages:
        received_as_sent(fake, message)


def test_two_thousand_five_hundred_through_the_channel_take_three_requests(fake, provider, settings):
    settings.NOTIFIER_PROVIDER_MAX_PER_SECOND = {}
    messages = [campaign_email(n) for n in range(1, 2501)]

    outcomes = dict(send_guarded(provider, messages))

    assert [len(r.body["personalizations"]) for r in fake.requests] == [1000, 1000, 500]
    assert len(outcomes) == 2500 and all(isinstance(o, SendResult) for o in outcomes.values())
    assert len(fake.accepted) == 2500
    assert len({o.provider_message_id for o in outcomes.values()}) == 3


def test_a_batch_takes_a_send_token_per_message(fake, provider, settings, clean_redis):
    settings.NOTIFIER_PROVIDER_MAX_PER_SECOND = {"sendgrid": 2000}
    messages = [campaign_email(n) for n in range(1, 1001)]

    dict(send_guarded(provider, messages))

    assert len(fake.requests) == 1
    tokens_left = float(clean_redis.hget("notifier:send-rate:sendgrid", "tokens"))
    assert tokens_left < 1000 + 10  # 2,000 at the start, 1,000 taken, a few refilled since


def test_under_a_send_rate_below_a_thousand_a_batch_is_a_seconds_worth_and_waits_for_all_its_tokens(
    fake, provider, settings
):
    settings.NOTIFIER_PROVIDER_MAX_PER_SECOND = {"sendgrid": 400}
    messages = [campaign_email(n) for n in range(1, 801)]

    outcomes = dict(send_guarded(provider, messages))

    assert [len(r.body["personalizations"]) for r in fake.requests] == [400, 400]
    assert all(isinstance(o, SendResult) for o in outcomes.values())
    assert fake.requests[1].received_at - fake.requests[0].received_at >= 0.9


def test_medium_and_high_priority_email_stays_one_request_per_message(fake, provider):
    messages = [campaign_email(n, priority="medium" if n % 2 else "high") for n in range(1, 21)]

    results = provider.send_batch(messages)

    assert len(fake.requests) == 20
    assert all(len(r.body["personalizations"]) == 1 for r in fake.requests)
    assert all(isinstance(r, SendResult) for r in results)
    assert provider.group_size_for(messages[0]) == provider.batch_concurrency
    assert provider.group_size_for(campaign_email(1)) == 1000
    for message in messages:
        received_as_sent(fake, message)


def test_a_personalization_with_an_invalid_address_fails_alone_and_the_rest_go_out_as_a_batch(fake, provider):
    messages = [campaign_email(n) for n in range(1, 1001)]
    messages[12] = campaign_email(13, to="user13.example.com")

    results = provider.send_batch(messages)

    refused, retried = fake.requests
    assert len(refused.body["personalizations"]) == 1000
    assert len(retried.body["personalizations"]) == 999
    assert isinstance(results[12], PermanentError)
    assert results[12].target_gone is True and results[12].code == "400"
    assert "Does not contain a valid address." in str(results[12])
    assert all(isinstance(r, SendResult) for i, r in enumerate(results) if i != 12)
    assert fake.accepted_for(13) == []
    assert fake.calls_per_delivery()["1"] == 2  # in the refused request and in the one sent again
    accepted = fake.accepted_per_delivery()
    assert "13" not in accepted and set(accepted.values()) == {1} and len(accepted) == 999
    for message in messages[:12] + messages[13:]:
        received_as_sent(fake, message)


def test_every_address_sendgrid_names_is_refused_alone(fake, provider):
    fake.set_outcome("user5@example.com", status=400)
    fake.set_outcome("user9@example.com", status=400)
    messages = [campaign_email(n) for n in range(1, 11)]

    results = provider.send_batch(messages)

    assert [len(r.body["personalizations"]) for r in fake.requests] == [10, 8]
    assert [i for i, r in enumerate(results) if isinstance(r, PermanentError) and r.target_gone] == [4, 8]
    assert len(fake.accepted) == 8


def test_a_refusal_about_no_one_personalization_sends_each_message_on_its_own(fake, provider):
    fake.set_outcome("user3@example.com", status=400, body={"errors": [
        {"message": "The content value must be a string at least one character in length.",
         "field": "content.0.value", "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"}]})
    messages = [campaign_email(n) for n in range(1, 6)]

    results = provider.send_batch(messages)

    assert [len(r.body["personalizations"]) for r in fake.requests] == [5, 1, 1, 1, 1, 1]
    assert isinstance(results[2], PermanentError) and results[2].target_gone is False
    assert all(isinstance(r, SendResult) for i, r in enumerate(results) if i != 2)


def test_a_refusal_without_sendgrids_error_list_sends_each_message_on_its_own(fake, provider):
    fake.set_outcome("user2@example.com", status=400, body="Bad Request")
    messages = [campaign_email(n) for n in range(1, 4)]

    results = provider.send_batch(messages)

    assert [len(r.body["personalizations"]) for r in fake.requests] == [3, 1, 1, 1]
    assert isinstance(results[1], PermanentError)
    assert isinstance(results[0], SendResult) and isinstance(results[2], SendResult)


def test_an_email_whose_substitutions_would_be_too_big_is_sent_on_its_own_the_usual_way(fake, provider):
    messages = [campaign_email(n) for n in range(1, 6)]
    own_block = "".join(f"<p>Only for you, line {k}: {secrets.token_hex(40)}</p>" for k in range(120))  # ~13 KB
    messages[2] = campaign_email(3, html_body=messages[2].html_body.replace("</body>", own_block + "</body>"))

    results = provider.send_batch(messages)

    batch, alone = fake.requests
    assert len(batch.body["personalizations"]) == 4
    assert alone.body == provider.payload(messages[2])
    assert all(isinstance(r, SendResult) for r in results)
    for message in messages:
        received_as_sent(fake, message)


def test_the_same_address_twice_goes_in_two_requests(fake, provider):
    messages = [campaign_email(1), campaign_email(2), campaign_email(3, to="USER1@example.com")]

    results = provider.send_batch(messages)

    assert sorted(len(r.body["personalizations"]) for r in fake.requests) == [1, 2]
    assert all(isinstance(r, SendResult) for r in results)
    assert len(fake.accepted) == 3


def test_a_rate_limited_batch_rate_limits_every_message(fake, provider):
    fake.set_default(status=429, headers={"Retry-After": "20"})
    messages = [campaign_email(n) for n in range(1, 101)]

    results = provider.send_batch(messages)

    assert len(fake.requests) == 1
    assert all(isinstance(r, RateLimited) and r.retry_after == 20 for r in results)


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_on_a_batch_is_transient_for_every_message(fake, provider, status):
    fake.set_default(status=status)
    messages = [campaign_email(n) for n in range(1, 101)]

    results = provider.send_batch(messages)

    assert len(fake.requests) == 1
    assert all(isinstance(r, TransientError) and r.code == str(status) for r in results)


def test_a_failed_batch_counts_once_for_the_circuit(fake, provider, settings):
    settings.NOTIFIER_CIRCUIT_FAILURE_THRESHOLD = 3
    fake.set_default(status=503)

    for _ in range(2):
        outcomes = dict(send_guarded(provider, [campaign_email(n) for n in range(1, 501)]))
        assert all(isinstance(o, TransientError) for o in outcomes.values())

    assert circuit_states(["sendgrid"])["sendgrid"] == "closed"
    send_guarded_list = list(send_guarded(provider, [campaign_email(n) for n in range(1, 501)]))
    assert len(send_guarded_list) == 500
    assert circuit_states(["sendgrid"])["sendgrid"].startswith("open")


def test_a_dropped_connection_on_a_batch_is_transient_for_every_message(fake, provider):
    fake.set_default(status=202, drop=True)

    results = provider.send_batch([campaign_email(n) for n in range(1, 11)])

    assert all(isinstance(r, TransientError) and r.code == "connection" for r in results)


def test_batch_size_one_sends_low_priority_email_one_by_one(fake):
    provider = sendgrid.build({"api_key": API_KEY, "from_email": "news@notifier.example", "host": fake.url,
                               "batch_size": "1"})

    provider.send_batch([campaign_email(n) for n in range(1, 4)])

    assert [len(r.body["personalizations"]) for r in fake.requests] == [1, 1, 1]


# --- the fake keeps SendGrid's limits --------------------------------------------------------------------

def sdk(fake):
    return sendgrid_sdk.SendGridAPIClient(api_key=API_KEY, host=fake.url)


def mail_with(personalizations):
    return {"personalizations": personalizations, "from": {"email": "news@notifier.example"}, "subject": "Hi",
            "content": [{"type": "text/plain", "value": "Hello -name-"}]}


def refusal(fake, body):
    from python_http_client.exceptions import HTTPError

    with pytest.raises(HTTPError) as raised:
        sdk(fake).send(body)
    return raised.value.status_code, raised.value.to_dict["errors"]


def test_the_fake_refuses_more_than_a_thousand_personalizations(fake):
    status, [error] = refusal(fake, mail_with([{"to": [{"email": f"u{n}@example.com"}]} for n in range(1001)]))

    assert status == 400
    assert error["field"] == "personalizations"
    assert error["message"].startswith("The personalization block is limited to 1000 personalizations per API "
                                       "request. You have provided 1001 personalizations.")
    assert fake.accepted == []


def test_the_fake_refuses_more_than_ten_thousand_bytes_of_substitutions_in_a_personalization(fake):
    status, [error] = refusal(fake, mail_with([
        {"to": [{"email": "a@example.com"}], "substitutions": {"-name-": "Ada"}},
        {"to": [{"email": "b@example.com"}], "substitutions": {"-name-": "x" * 9_995}},
    ]))

    assert status == 400
    assert error["field"] == "personalizations.1.substitutions"
    assert "may not exceed 10,000 bytes per personalization" in error["message"]


def test_the_fake_refuses_the_same_address_twice_in_a_request(fake):
    status, [error] = refusal(fake, mail_with([{"to": [{"email": "a@example.com"}]},
                                               {"to": [{"email": "A@example.com"}]}]))

    assert status == 400
    assert "should only be included once" in error["message"]


def test_the_fake_names_each_invalid_address(fake):
    status, errors = refusal(fake, mail_with([{"to": [{"email": "a@example.com"}]}, {"to": [{"email": "nobody"}]},
                                              {"to": [{"email": "b@"}]}]))

    assert status == 400
    assert [(e["field"], e["message"]) for e in errors] == [
        ("personalizations.1.to.0.email", "Does not contain a valid address."),
        ("personalizations.2.to.0.email", "Does not contain a valid address."),
    ]


def test_the_fake_applies_each_personalizations_substitutions_and_headers(fake):
    body = mail_with([{"to": [{"email": "a@example.com"}], "substitutions": {"-name-": "Ada"},
                       "headers": {"X-Own": "1"}, "subject": "Hi -name-"},
                      {"to": [{"email": "b@example.com"}], "substitutions": {"-name-": "Bob"}}])
    body["headers"] = {"X-Shared": "yes", "X-Own": "0"}

    response = sdk(fake).send(body)

    assert response.status_code == 202
    ada, bob = fake.accepted
    assert (ada.subject, ada.text, ada.headers) == ("Hi Ada", "Hello Ada", {"X-Shared": "yes", "X-Own": "1"})
    assert (bob.subject, bob.text, bob.headers) == ("Hi", "Hello Bob", {"X-Shared": "yes", "X-Own": "0"})
    assert ada.message_id == bob.message_id == response.headers["X-Message-Id"]
