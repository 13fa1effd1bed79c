"""The admin as an operator uses it: pages render, templates are versioned, previews show what will be
sent, tests and resends go through the real pipeline, keys are shown once."""
import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from notifier.models import (
    Delivery,
    Device,
    DigestBatch,
    InboxItem,
    Notification,
    NotificationType,
    Producer,
    Recipient,
    SandboxMessage,
    Template,
)
from notifier.models.producers import hash_key
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from tests.conftest import make_order_type, make_reachable_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(client):
    User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.login(username="ops", password="pw")
    return client


def messages_of(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


@pytest.mark.parametrize("model", [Producer, Recipient, Device, NotificationType, Template, Notification, Delivery,
                                   InboxItem, DigestBatch, SandboxMessage])
def test_every_changelist_renders_and_searches(ops, model):
    make_order_type()
    make_reachable_user()
    url = reverse(f"admin:notifier_{model._meta.model_name}_changelist")

    assert ops.get(url).status_code == 200
    assert ops.get(url, {"q": "u_42"}).status_code == 200


def test_a_notification_page_shows_its_deliveries_and_decision_trail(ops, api, order_type, reachable_user):
    Device.objects.filter(platform="android").update(active=False)
    notification_id = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                         "data": {"order_id": "7"}}, format="json").json()["notifications"][0]["id"]
    route_due("high")

    page = ops.get(reverse("admin:notifier_notification_change", args=[notification_id])).content.decode()

    assert "ios-token-1" in page and "u_42@example.com" in page  # deliveries
    assert "<b>queued</b>" in page and "template_version=1" in page  # decision trail
    assert 'name="_save"' not in page  # history is read-only


class TestTemplates:
    def test_creating_three_languages_and_editing_one_publishes_versions(self, ops):
        notification_type = NotificationType.objects.create(key="liked", default_channels=["in_app"],
                                                            variables={"actor": {"required": True}})
        add = reverse("admin:notifier_template_add")
        for language, body in (("en", "{{ actor }} liked your photo"), ("pt", "{{ actor }} curtiu sua foto"),
                               ("de", "{{ actor }} gefällt dein Foto")):
            response = ops.post(add, {"type": notification_type.pk, "channel": "in_app", "language": language,
                                      "title": "Like", "body": body})
            assert response.status_code == 302
        english = Template.objects.get(language="en")

        ops.post(reverse("admin:notifier_template_change", args=[english.pk]),
                 {"title": "Like", "body": "{{ actor }} loved your photo"})

        versions = Template.objects.filter(language="en").order_by("version")
        assert [(t.version, t.active, t.body) for t in versions] == [
            (1, False, "{{ actor }} liked your photo"), (2, True, "{{ actor }} loved your photo")]
        assert Template.objects.filter(active=True).count() == 3

    def test_a_template_that_reaches_outside_the_sandbox_is_refused_in_the_form(self, ops):
        notification_type = NotificationType.objects.create(key="t", default_channels=["sms"])

        response = ops.post(reverse("admin:notifier_template_add"), {
            "type": notification_type.pk, "channel": "sms", "language": "en", "body": "{% debug %}"})

        assert response.status_code == 200
        assert "Invalid block tag" in response.content.decode()
        assert not Template.objects.exists()

    def test_editing_a_marketing_email_without_an_unsubscribe_link_is_refused(self, ops):
        sale = NotificationType.objects.create(key="sale", category="marketing", default_channels=["email"])
        template = Template.objects.create(type=sale, channel="email", subject="Sale",
                                           body="Sale! {{ unsubscribe_url }}")

        response = ops.post(reverse("admin:notifier_template_change", args=[template.pk]),
                            {"subject": "Sale", "body": "Sale! No way out."})

        assert "Marketing email must contain an unsubscribe link" in response.content.decode()
        assert Template.objects.count() == 1

    def test_the_preview_shows_each_channel_as_it_will_be_sent(self, ops, order_type):
        pages = {t.channel: ops.get(reverse("admin:notifier_template_preview", args=[t.pk])).content.decode()
                 for t in Template.objects.all()}

        assert "payload size" in pages["push"] and "&quot;aps&quot;" in pages["push"]
        assert "segments" in pages["sms"] and "GSM-7" in pages["sms"]
        assert "srcdoc=" in pages["email"] and "&lt;!DOCTYPE html&gt;" in pages["email"]  # the layout, escaped
        assert "Order &lt;order_id&gt; shipped" in pages["email"]  # sample data for a variable with no example
        assert "Order shipped" in pages["in_app"]

    def test_the_preview_explains_why_a_template_cannot_be_sent(self, ops, order_type):
        push = Template.objects.get(channel="push")

        page = ops.post(reverse("admin:notifier_template_preview", args=[push.pk]),
                        {"data": '{"order_id": "' + "x" * 5000 + '"}', "preview": "1"}).content.decode()

        assert "Cannot be sent" in page and "over the 4096-byte limit" in page

    def test_send_test_reaches_the_users_inbox(self, ops, order_type):
        in_app = Template.objects.get(channel="in_app")

        response = ops.post(reverse("admin:notifier_template_preview", args=[in_app.pk]),
                            {"data": '{"order_id": "T-1"}', "user_id": "u_test", "send_test": "1"}, follow=True)
        route_due("high")
        deliver_due("in_app", "high")

        assert "Test sent to u_test on in_app" in messages_of(response)
        item = InboxItem.objects.get(recipient__user_id="u_test")
        assert item.body == "Order T-1 ships."
        assert Notification.objects.get().producer.name == "admin-console"

    def test_the_diff_shows_what_changed_between_versions(self, ops, order_type):
        sms = Template.objects.get(channel="sms")
        ops.post(reverse("admin:notifier_template_change", args=[sms.pk]),
                 {"body": "Your order {{ order_id }} is on its way."})
        latest = Template.objects.get(channel="sms", active=True)

        page = ops.get(reverse("admin:notifier_template_diff", args=[latest.pk])).content.decode()

        assert "-Order {{ order_id }} ships with {{ carrier }}." in page
        assert "+Your order {{ order_id }} is on its way." in page


class TestActions:
    def test_deactivating_a_device_stops_sends_to_it(self, ops, reachable_user):
        device = Device.objects.get(token="ios-token-1")

        ops.post(reverse("admin:notifier_device_changelist"),
                 {"action": "deactivate", "_selected_action": [device.pk]})

        device.refresh_from_db()
        assert not device.active and device.deactivated_reason == "deactivated in admin by ops"

    def test_resending_a_notification_creates_a_new_one_and_keeps_the_original(self, ops, api, order_type,
                                                                             reachable_user):
        original_id = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                         "data": {"order_id": "5"}, "channels": ["sms"]},
                               format="json").json()["notifications"][0]["id"]

        ops.post(reverse("admin:notifier_notification_changelist"),
                 {"action": "resend", "_selected_action": [original_id]})

        resent = Notification.objects.exclude(id=original_id).get()
        assert (resent.data, resent.channels, resent.recipient.user_id) == ({"order_id": "5"}, ["sms"], "u_42")

    def test_rotating_a_producer_key_shows_the_new_key_once_and_retires_the_old(self, ops, producer):
        old_key = producer.key

        response = ops.post(reverse("admin:notifier_producer_changelist"),
                            {"action": "rotate_keys", "_selected_action": [producer.pk]}, follow=True)

        new_key = re.search(r"<code>(nk_[^<]+)</code>", messages_of(response)).group(1)
        producer.refresh_from_db()
        assert producer.key_hash == hash_key(new_key) != hash_key(old_key)
        assert new_key not in ops.get(reverse("admin:notifier_producer_changelist")).content.decode()

    def test_adding_a_producer_shows_its_key_once(self, ops):
        response = ops.post(reverse("admin:notifier_producer_add"),
                            {"name": "billing", "scopes": '["send"]', "is_active": "on"}, follow=True)

        key = re.search(r"<code>(nk_[^<]+)</code>", messages_of(response)).group(1)
        assert Producer.objects.get(name="billing").key_hash == hash_key(key)

