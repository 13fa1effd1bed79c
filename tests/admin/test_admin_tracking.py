"""Admin shows who unsubscribed from what and when (the Unsubscription list, each recipient's page), and
edits a type's email tracking setting."""
import pytest
from django.test import Client
from django.urls import reverse

from notifier.models import NotificationType, Unsubscription
from notifier.pipeline.render import unsubscribe_url
from tests.conftest import make_order_type, make_reachable_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def unsubscribed(db):
    make_order_type("spring_sale", channels=("email",), category="marketing")
    recipient = make_reachable_user("u_7", devices=())
    link = unsubscribe_url("u_7", "spring_sale")
    assert Client().post(link[link.index("/api/v1/"):]).status_code == 200
    return recipient


def test_the_unsubscription_list_shows_who_from_what_how_and_when(ops, unsubscribed):
    response = ops.get(reverse("admin:notifier_unsubscription_changelist"))

    page = response.content.decode()
    assert response.status_code == 200
    row = Unsubscription.objects.get()
    assert "u_7" in page and "marketing" in page and "link" in page and "spring_sale" in page
    assert row.created_at.strftime("%Y") in page


def test_the_unsubscription_list_filters_by_source_and_finds_a_user(ops, unsubscribed):
    url = reverse("admin:notifier_unsubscription_changelist")

    assert "u_7" in ops.get(url, {"source": "link"}).content.decode()
    assert "0 unsubscriptions" in ops.get(url, {"source": "admin"}).content.decode()
    assert "u_7" in ops.get(url, {"q": "u_7"}).content.decode()


def test_unsubscriptions_are_history_not_edited_by_hand(ops, unsubscribed):
    row = Unsubscription.objects.get()

    assert ops.get(reverse("admin:notifier_unsubscription_add")).status_code == 403
    assert ops.post(reverse("admin:notifier_unsubscription_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    assert Unsubscription.objects.filter(pk=row.pk).exists()


def test_a_recipients_page_lists_their_unsubscriptions_and_links_to_all(ops, unsubscribed):
    response = ops.get(reverse("admin:notifier_recipient_change", args=[unsubscribed.pk]))

    page = response.content.decode()
    assert "marketing on email (link, from spring_sale)" in page
    assert f"?recipient__id__exact={unsubscribed.pk}" in page


def test_a_types_tracking_setting_is_edited_and_listed(ops):
    notification_type = make_order_type("receipt", channels=("email",))
    url = reverse("admin:notifier_notificationtype_change", args=[notification_type.pk])

    response = ops.post(url, {
        "key": "receipt", "name": "", "category": "transactional", "default_priority": "high",
        "default_channels": '["email"]', "default_language": "en", "variables": "{}", "rate_limit_action": "suppress",
        "digest_window_seconds": 0, "track_engagement": "on", "templates-TOTAL_FORMS": "0",
        "templates-INITIAL_FORMS": "0"})

    assert response.status_code == 302
    assert NotificationType.objects.get(pk=notification_type.pk).track_engagement == "on"
    listing = ops.get(reverse("admin:notifier_notificationtype_changelist"), {"track_engagement__exact": "on"})
    assert "receipt" in listing.content.decode()
    off = ops.get(reverse("admin:notifier_notificationtype_changelist"), {"track_engagement__exact": "off"})
    assert "receipt" not in off.content.decode()
