"""A type's default_fallback_channels in the admin: checked as the API checks them."""
import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def type_form_data(**changes) -> dict:
    data = {"key": "order_shipped", "name": "", "category": "transactional", "default_priority": "high",
            "default_channels": '["push", "email"]', "default_language": "en",
            "variables": '{"order_id": {"required": true}}', "rate_limit_action": "suppress",
            "digest_window_seconds": 0, "track_engagement": "default",
            "templates-TOTAL_FORMS": "0", "templates-INITIAL_FORMS": "0"}
    return {**data, **changes}


def test_a_default_fallback_repeating_a_default_channel_is_refused_on_the_field(ops, order_type):
    url = reverse("admin:notifier_notificationtype_change", args=[order_type.pk])

    response = ops.post(url, type_form_data(default_fallback_channels='["push"]'))

    assert response.status_code == 200
    assert "is one of default_channels" in str(response.context["adminform"].form.errors["default_fallback_channels"])
    order_type.refresh_from_db()
    assert order_type.default_fallback_channels == []


def test_a_default_fallback_is_saved_and_an_emptied_box_means_none(ops, order_type):
    url = reverse("admin:notifier_notificationtype_change", args=[order_type.pk])

    assert ops.post(url, type_form_data(default_fallback_channels='["sms"]')).status_code == 302
    order_type.refresh_from_db()
    assert order_type.default_fallback_channels == ["sms"]
    assert ops.post(url, type_form_data(default_fallback_channels="")).status_code == 302
    order_type.refresh_from_db()
    assert order_type.default_fallback_channels == []
