"""campaign_dry_run against a hand-computed expectation: eight subscribers of a marketing topic, each
chosen to land in one bucket (opted in and reachable, not opted in, no targets, a suppressed address, an
opted-out category, quiet hours, a disabled channel, a full rate-limit window), decided by the route
step's own code, with nothing stored, sent or counted, and each template rendered once."""
from datetime import UTC, datetime, time

import pytest
from django.test import override_settings

from notifier import metrics
from notifier.campaigns.dry_run import campaign_dry_run
from notifier.campaigns.segments import segment_parse
from notifier.models import (
    Campaign, Delivery, Device, DigestBatch, EmailSuppression, Notification, Producer, Recipient, RecipientTopic,
)
from notifier.pipeline import render
from tests.conftest import make_order_type

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
EXPECTED = {
    "targeted": 8,
    "eligible": {"push": 4, "email": 3},  # push: ann, dee, eve, fay; email: ann, fay, gus
    "held": 2,  # fay's push and email wait for her quiet hours (they are in eligible too)
    "suppressed": {"not_opted_in": 2,  # bob, both channels
                   "no_target": 2,  # cal has no device and no address
                   "email_suppressed": 1,  # dee's address bounced
                   "opted_out": 2,  # eve opted out of marketing email; gus turned push off
                   "rate_limited": 2},  # hal had his one marketing message today already
    "unknown_user_ids": 0,
    "sampled": False,
}


def person(user_id, *, email=True, device=True, topic="spring", **fields) -> Recipient:
    recipient = Recipient.objects.create(user_id=user_id, email=f"{user_id}@example.com" if email else "",
                                         marketing_opt_in=fields.pop("marketing_opt_in", True), **fields)
    if device:
        Device.objects.create(recipient=recipient, platform="android", token=f"token-{user_id}")
    if topic:
        RecipientTopic.objects.create(recipient=recipient, topic=topic)
    return recipient


@pytest.fixture
def promo(db):
    return make_order_type("spring_sale", channels=("push", "email"), category="marketing", default_priority="low")


@pytest.fixture
def audience(promo, clean_redis):
    person("ann")
    person("bob", marketing_opt_in=False)
    person("cal", email=False, device=False)
    person("dee")
    EmailSuppression.objects.create(address="dee@example.com", reason="hard_bounce")
    person("eve", type_preferences={"marketing": {"email": False}})
    person("fay", timezone="Asia/Karachi", quiet_hours_start=time(16, 0), quiet_hours_end=time(23, 0))  # 17:00 there
    person("gus", channel_preferences={"push": False})
    person("hal")
    person("ivy", topic="autumn")  # not in the segment
    # hal's marketing window (1 a day) is full: another campaign reached him an hour ago.
    clean_redis.zadd("notifier:rl:type:marketing:hal", {"earlier-notification": NOW.timestamp() * 1000 - 3_600_000})
    clean_redis.expire("notifier:rl:type:marketing:hal", 86400)


def unsaved_campaign(notification_type, segment: dict) -> Campaign:
    producer, _ = Producer.create_with_key("shop", ["send"])
    return Campaign(producer=producer, name="spring", type=notification_type, data={"order_id": "SALE"},
                    segment=segment_parse(segment))


def test_a_topic_campaigns_dry_run_counts_what_routing_would_decide(promo, audience):
    answer = campaign_dry_run(unsaved_campaign(promo, {"topic": "spring"}), now=NOW)

    assert answer == EXPECTED


def test_a_user_ids_dry_run_counts_the_unknown_ids(promo, audience):
    user_ids = ["ann", "bob", "cal", "dee", "eve", "fay", "gus", "hal", "nobody", "ghost", "ann"]
    campaign = unsaved_campaign(promo, {"user_ids": user_ids})

    assert campaign_dry_run(campaign, user_ids=campaign.segment["user_ids"], now=NOW) == {
        **EXPECTED, "unknown_user_ids": 2}
    assert not Recipient.objects.filter(user_id__in=["nobody", "ghost"]).exists()


def test_a_filter_dry_run_and_the_campaigns_own_channels(promo, audience):
    campaign = unsaved_campaign(promo, {"filter": {"field": "user_id", "in": ["ann", "bob", "dee"]}})
    campaign.channels = ["email"]

    assert campaign_dry_run(campaign, now=NOW) == {
        "targeted": 3, "eligible": {"email": 1}, "held": 0, "unknown_user_ids": 0, "sampled": False,
        "suppressed": {"not_opted_in": 1, "email_suppressed": 1}}


def test_a_dry_run_stores_sends_and_counts_nothing_and_renders_each_template_once(promo, audience, clean_redis,
                                                                                   monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a dry run counted a metric")

    renders = []
    real_render = render.template_render
    monkeypatch.setattr(render, "template_render", lambda template, *args, **kwargs: (
        renders.append(template.channel) or real_render(template, *args, **kwargs)))
    monkeypatch.setattr(metrics, "route_suppressed_count", must_not_run)
    monkeypatch.setattr(metrics, "rate_limited_count", must_not_run)
    keys_before = sorted(clean_redis.keys("notifier:rl:*"))

    campaign_dry_run(unsaved_campaign(promo, {"topic": "spring"}), now=NOW)

    assert sorted(renders) == ["email", "push"]  # once per template for the chunk, not once per recipient
    assert sorted(clean_redis.keys("notifier:rl:*")) == keys_before  # nobody's window was counted
    assert clean_redis.zcard("notifier:rl:type:marketing:hal") == 1
    assert not Notification.objects.exists() and not Delivery.objects.exists() and not DigestBatch.objects.exists()
    assert not Campaign.objects.exists()


def test_a_template_that_fails_to_render_counts_as_render_failed_not_eligible(promo, audience):
    campaign = unsaved_campaign(promo, {"topic": "spring"})
    campaign.data = {}  # order_id is a required variable of the type's templates

    answer = campaign_dry_run(campaign, now=NOW)

    # Everyone the templates would have reached (7 eligible, and hal's 2 over the rate limit, which is
    # checked after rendering) fails to render; the others are suppressed for the same reasons as before.
    assert answer["eligible"] == {"push": 0, "email": 0} and answer["held"] == 0
    assert answer["suppressed"] == {"not_opted_in": 2, "no_target": 2, "email_suppressed": 1, "opted_out": 2,
                                    "render_failed": 9}


def test_the_real_route_step_counts_the_windows_the_dry_run_only_read(promo, audience, clean_redis):
    # The same rules, for real: ann's marketing window is counted once routed (so the dry run's peek is
    # the read-only twin of a check that does count).
    from notifier.pipeline.route import notifications_decide

    notification = Notification(type=promo, recipient=Recipient.objects.get(user_id="ann"), priority="low",
                                data={"order_id": "SALE"}, due_at=NOW)
    notifications_decide([notification], NOW)

    assert clean_redis.zcard("notifier:rl:type:marketing:ann") == 1
    assert [d["decision"] for d in notification.decisions] == ["queued", "queued"]


def test_a_dry_run_reads_the_segment_in_chunks_with_a_fixed_number_of_queries(promo, django_assert_max_num_queries):
    Recipient.objects.bulk_create([Recipient(user_id=f"m_{n}", email=f"m_{n}@example.com", marketing_opt_in=True)
                                   for n in range(2500)])
    campaign = unsaved_campaign(promo, {"all": True})

    # the count, then per chunk of 1,000: recipients, devices, templates, email suppressions
    with django_assert_max_num_queries(1 + 3 * 4 + 1):
        answer = campaign_dry_run(campaign, now=NOW)

    assert answer["targeted"] == 2500
    assert answer["eligible"] == {"push": 0, "email": 2500}
    assert answer["suppressed"] == {"no_target": 2500}


@override_settings(NOTIFIER_CAMPAIGN_DRY_RUN_EXACT_LIMIT=10)
@pytest.mark.parametrize("segment", [{"all": True}, {"user_ids": [f"m_{n}" for n in range(40)]}],
                         ids=["queryset segment", "user_ids"])
def test_a_segment_over_the_exact_limit_is_estimated_from_a_sample(promo, segment):
    Recipient.objects.bulk_create([Recipient(user_id=f"m_{n}", email=f"m_{n}@example.com",
                                             marketing_opt_in=n % 2 == 0) for n in range(40)])

    answer = campaign_dry_run(unsaved_campaign(promo, segment), now=NOW)

    assert answer["sampled"] is True and answer["sample_size"] == 10 and answer["targeted"] == 40
    # Each recipient has one email decision: scaled by 4, the sample's buckets add up to the segment.
    assert answer["eligible"]["email"] + answer["suppressed"]["not_opted_in"] // 2 == 40
    assert answer["eligible"]["email"] % 4 == 0
