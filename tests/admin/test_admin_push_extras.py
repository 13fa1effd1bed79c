"""Push badge and sound on the admin's template pages; a notification's collapse key on its page."""
import pytest
from django.urls import reverse

from notifier.models import Template

pytestmark = pytest.mark.django_db


def test_editing_a_push_templates_badge_and_sound_publishes_a_version_with_them(ops, order_type):
    push = Template.objects.get(channel="push")
    assert 'name="badge"' in ops.get(reverse("admin:notifier_template_change", args=[push.pk])).content.decode()

    response = ops.post(reverse("admin:notifier_template_change", args=[push.pk]),
                        {"title": push.title, "body": push.body, "badge": "2", "sound": "default"})

    assert response.status_code == 302
    latest = Template.objects.get(channel="push", active=True)
    assert (latest.version, latest.badge, latest.sound) == (2, 2, "default")
    diff = ops.get(reverse("admin:notifier_template_diff", args=[latest.pk])).content.decode()
    assert "+2" in diff and "+default" in diff
    preview = ops.get(reverse("admin:notifier_template_preview", args=[latest.pk])).content.decode()
    assert "&quot;badge&quot;: 2" in preview and "&quot;sound&quot;: &quot;default&quot;" in preview


def test_a_badge_on_an_sms_template_is_refused_on_its_field(ops, order_type):
    sms = Template.objects.get(channel="sms")

    response = ops.post(reverse("admin:notifier_template_change", args=[sms.pk]),
                        {"body": sms.body, "badge": "1"})

    assert response.status_code == 200
    assert "Only push templates have a badge." in response.content.decode()
    assert Template.objects.filter(channel="sms").count() == 1


def test_a_notification_page_shows_its_collapse_key(ops, api, order_type, reachable_user):
    notification_id = api.post("/api/v1/notifications", {
        "type": "order_shipped", "user_id": "u_42", "data": {"order_id": "7"}, "collapse_key": "order-7",
    }, format="json").json()["notifications"][0]["id"]

    page = ops.get(reverse("admin:notifier_notification_change", args=[notification_id])).content.decode()

    assert "order-7" in page and "Collapse key" in page
