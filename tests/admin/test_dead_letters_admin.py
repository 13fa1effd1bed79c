"""The admin's Dead letters view: filters, the attempt history, and the two replay actions."""
import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from notifier.models import Delivery
from tests.support.dead_letters import make_dead_letters, use_scripted_providers

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:notifier_deadletter_changelist")


@pytest.fixture
def dead(settings, order_type):
    use_scripted_providers(settings)
    return (make_dead_letters(order_type, 2, "email", code="503", user_prefix="a")
            + make_dead_letters(order_type, 1, "sms", code="30003", user_prefix="b"))


def listed_ids(response) -> set[int]:
    return {row.pk for row in response.context["cl"].result_list}


def test_the_view_lists_only_dead_deliveries_and_filters_them(ops, dead):
    Delivery.objects.create(notification=dead[0].notification, channel="push", priority="high", target="t",
                            next_attempt_at=dead[0].failed_at, status="sent")

    assert listed_ids(ops.get(CHANGELIST)) == {d.id for d in dead}
    assert listed_ids(ops.get(CHANGELIST, {"channel__exact": "sms"})) == {dead[2].id}
    assert listed_ids(ops.get(CHANGELIST, {"provider__exact": "scripted"})) == {d.id for d in dead}
    assert listed_ids(ops.get(CHANGELIST, {"error_code": "30003"})) == {dead[2].id}
    assert listed_ids(ops.get(CHANGELIST, {"notification__type__id__exact": dead[0].notification.type_id})) == {
        d.id for d in dead}
    assert "30003" in ops.get(CHANGELIST).content.decode()  # offered as an error code filter


def test_a_dead_letter_shows_every_attempt_with_its_error(ops, dead, settings):
    page = ops.get(reverse("admin:notifier_deadletter_change", args=[dead[0].id])).content.decode()
    page = re.sub(r">\s+<", "><", page)

    assert "attempt history" in page.lower()
    max_attempts = settings.NOTIFIER_RETRY_POLICY["high"]["max_attempts"]
    assert page.count('<td class="field-message"><p>503: scripted outage</p></td>') == max_attempts
    assert page.count('<td class="field-provider_code"><p>503</p></td>') == max_attempts


def test_the_replay_action_replays_the_selected_dead_letters_once(ops, dead):
    selected = {"action": "replay", ACTION_CHECKBOX_NAME: [dead[0].id, dead[1].id]}

    ops.post(CHANGELIST, selected)
    response = ops.post(CHANGELIST, selected, follow=True)

    replays = Delivery.objects.filter(replayed_from__isnull=False)
    assert {(r.replayed_from_id, r.channel) for r in replays} == {(dead[0].id, "email"), (dead[1].id, "email")}
    assert "Replayed 0 dead letter(s); already replayed: 2." in response.content.decode()
    assert f"{replays[0].id} (email, queued)" in ops.get(CHANGELIST).content.decode()


def test_replay_to_channel_asks_for_the_channel_then_replays_there(ops, dead):
    selected = {"action": "replay_to_channel", ACTION_CHECKBOX_NAME: [dead[0].id]}

    form = ops.post(CHANGELIST, selected)
    assert form.status_code == 200 and 'name="channel"' in form.content.decode()
    assert not Delivery.objects.filter(replayed_from__isnull=False).exists()

    response = ops.post(CHANGELIST, {**selected, "apply": "Replay", "channel": "sms"}, follow=True)

    replay = Delivery.objects.get(replayed_from=dead[0])
    assert (replay.channel, replay.target) == ("sms", "+14155550100")
    assert "Replayed 1 dead letter(s) to sms" in response.content.decode()


def test_a_replay_the_admin_cannot_make_is_reported_with_the_reason(ops, dead):
    recipient = dead[0].notification.recipient
    recipient.phone = ""
    recipient.save()

    response = ops.post(CHANGELIST, {"action": "replay_to_channel", ACTION_CHECKBOX_NAME: [dead[0].id],
                                     "apply": "Replay", "channel": "sms"}, follow=True)

    assert "recipient has no phone number" in response.content.decode()
    assert not Delivery.objects.filter(replayed_from=dead[0]).exists()
