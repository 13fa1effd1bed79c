"""The route step counts what it suppresses (by reason) and what is over a rate limit (by action), once
per notification × channel, after its batch commits."""
import pytest

from notifier.metrics import SUPPRESSION_REASONS, suppression_reason
from notifier.models import Recipient
from notifier.pipeline.preferences import channel_verdict
from notifier.pipeline.route import route_due
from tests.conftest import make_order_type
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db


def test_a_channel_the_user_turned_off_counts_as_suppressed_for_that_reason(
        order_type, reachable_user, figures, django_capture_on_commit_callbacks):
    Recipient.objects.update(channel_preferences={"sms": False})
    before = figures("notifier_route_suppressed_total", channel="sms", reason="channel_disabled")

    make_notification(order_type, reachable_user, channels=["sms", "email"])
    with django_capture_on_commit_callbacks(execute=True):
        route_due("high")

    assert figures("notifier_route_suppressed_total", channel="sms", reason="channel_disabled") == before + 1
    assert figures("notifier_route_suppressed_total", channel="email", reason="channel_disabled") == 0


def test_over_a_rate_limit_counts_the_action_and_a_suppression_by_rate_limit(
        reachable_user, settings, figures, django_capture_on_commit_callbacks):
    settings.NOTIFIER_RATE_LIMITS = {"channel": {"sms": (1, 3600)}, "type": {}}
    dropped = make_order_type(key="order_shipped", channels=("sms",))
    held = make_order_type(key="daily_summary", channels=("sms",), rate_limit_action="hold")
    before = {action: figures("notifier_rate_limited_total", channel="sms", action=action)
              for action in ("suppressed", "held")}
    suppressed_before = figures("notifier_route_suppressed_total", channel="sms", reason="rate_limited")

    for notification_type in (dropped, dropped, held):
        make_notification(notification_type, reachable_user)
    with django_capture_on_commit_callbacks(execute=True):
        route_due("high")

    assert figures("notifier_rate_limited_total", channel="sms", action="suppressed") == before["suppressed"] + 1
    assert figures("notifier_rate_limited_total", channel="sms", action="held") == before["held"] + 1
    assert figures("notifier_route_suppressed_total", channel="sms", reason="rate_limited") == suppressed_before + 1


def test_every_reason_the_preferences_give_has_its_own_label(order_type):
    # The labels are read from the reasons' wording (pipeline/preferences.py): a rewording must not fall
    # silently into "other".
    promo = make_order_type(key="spring_sale", channels=("email",), category="marketing")
    cases = [  # (type, the user's preferences, channel)
        (promo, {}, "email"),
        (order_type, {"type_preferences": {"order_shipped": {"sms": False}}}, "sms"),
        (order_type, {"type_preferences": {"transactional": {"sms": False}}}, "sms"),
        (order_type, {"channel_preferences": {"sms": False}}, "sms"),
    ]
    labels = set()
    for notification_type, preferences, channel in cases:
        user = Recipient(user_id="u_1", **preferences)
        verdict = channel_verdict(user, notification_type, channel)
        assert not verdict.allowed
        labels.add(suppression_reason(verdict.reason))

    assert labels == {label for _, label in SUPPRESSION_REASONS} - {"rate_limited"}
    assert suppression_reason("rate limited: 1/hour sms") == "rate_limited"
