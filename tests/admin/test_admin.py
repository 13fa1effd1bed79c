"""The admin as an operator uses it: pages render, templates are versioned, previews show what will be
sent, tests and resends go through the real pipeline, keys are shown once."""
import re

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils import timezone

from notifier.models import (
    Delivery,
    Device,
    DigestBatch,
    IdempotencyKey,
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


def messages_of(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


@pytest.mark.parametrize("model", [Producer, Recipient, Device, NotificationType, Template, Notification, Delivery,
                                   InboxItem, DigestBatch, SandboxMessage, IdempotencyKey])
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


class TestHistory:
    """What happened stays as it happened: history rows and template versions cannot be deleted."""

    @pytest.fixture
    def history(self, api, order_type, reachable_user):
        api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"},
                                           "idempotency_key": "k-1", "channels": ["in_app"]}, format="json")
        route_due("high")
        deliver_due("in_app", "high")
        notification = Notification.objects.get()
        DigestBatch.objects.create(recipient=reachable_user, type=order_type, channel="push",
                                   window_ends_at=timezone.now())
        return {Notification: notification, Delivery: Delivery.objects.get(), InboxItem: InboxItem.objects.get(),
                DigestBatch: DigestBatch.objects.get(), IdempotencyKey: IdempotencyKey.objects.get(),
                Template: Template.objects.get(channel="in_app")}

    @pytest.mark.parametrize("model", [Notification, Delivery, InboxItem, DigestBatch, IdempotencyKey, Template])
    def test_history_and_template_versions_cannot_be_deleted(self, ops, history, model):
        row = history[model]
        name = model._meta.model_name

        delete_page = ops.post(reverse(f"admin:notifier_{name}_delete", args=[row.pk]), {"post": "yes"})
        changelist = ops.get(reverse(f"admin:notifier_{name}_changelist")).content.decode()

        assert delete_page.status_code == 403
        assert 'value="delete_selected"' not in changelist
        assert model.objects.filter(pk=row.pk).exists()

    def test_a_template_version_that_rendered_a_delivery_cannot_be_deleted_even_in_code(self, history):
        template, delivery = history[Template], history[Delivery]

        with pytest.raises(ProtectedError):
            template.delete()

        delivery.refresh_from_db()
        assert delivery.template_id == template.pk  # not set to NULL

    def test_every_row_is_named_by_what_it_holds_not_by_its_class_and_id(self, ops, history):
        sandbox = SandboxMessage.objects.create(channel="email", user_id="u_42", to="u_42@example.com",
                                                notification_id=history[Notification].id, delivery_id=999, message={})
        rows = {**history, SandboxMessage: sandbox}

        assert (str(rows[InboxItem]), str(rows[SandboxMessage]), str(rows[IdempotencyKey])) == (
            "Order shipped", "email to u_42@example.com", "k-1")
        assert [model.__name__ for model in apps.get_app_config("notifier").get_models()
                if model.__str__ is models.Model.__str__] == []
        for model, row in rows.items():
            page = ops.get(reverse(f"admin:notifier_{model._meta.model_name}_change", args=[row.pk])).content.decode()
            assert f"{model.__name__} object" not in page

    def test_idempotency_keys_are_listed_read_only(self, ops, history):
        key = history[IdempotencyKey]

        page = ops.get(reverse("admin:notifier_idempotencykey_change", args=[key.pk])).content.decode()

        assert "k-1" in page and 'name="_save"' not in page
        assert "k-1" in ops.get(reverse("admin:notifier_idempotencykey_changelist"), {"q": "k-1"}).content.decode()

    def test_a_notifications_deliveries_show_why_they_wait_and_until_when(self, ops, api, order_type,
                                                                          reachable_user):
        notification_id = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_42",
                                                             "data": {"order_id": "7"}, "channels": ["sms"]},
                                   format="json").json()["notifications"][0]["id"]
        route_due("high")
        Delivery.objects.update(status="held", status_reason="held for quiet hours until 07:00 Asia/Karachi")

        page = ops.get(reverse("admin:notifier_notification_change", args=[notification_id])).content.decode()

        assert "Status reason" in page and "held for quiet hours until 07:00 Asia/Karachi" in page
        assert "Next attempt at" in page


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
        assert response.context["adminform"].form.errors["body"] == [
            "Template syntax error: The tag 'debug' is not allowed in notifier templates (line 1)."]
        assert not Template.objects.exists()

    def test_saving_a_tag_left_open_is_refused_on_its_field_and_publishes_no_version(self, ops, order_type):
        in_app = Template.objects.get(channel="in_app")

        response = ops.post(reverse("admin:notifier_template_change", args=[in_app.pk]),
                            {"title": "Order shipped", "body": "{{ actor "})

        assert response.status_code == 200
        assert "Published version" not in messages_of(response)
        assert response.context["adminform"].form.errors["body"] == [
            "Template syntax error: '{{' on line 1 is not closed: a tag must end with '}}' on the same line."]
        assert list(Template.objects.filter(channel="in_app").values_list("version", "active")) == [(1, True)]

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

        assert "Test of version 1 sent to u_test on in_app" in messages_of(response)
        item = InboxItem.objects.get(recipient__user_id="u_test")
        assert item.body == "Order T-1 ships."
        assert Notification.objects.get().producer.name == "admin-console"

    def test_after_a_test_is_sent_the_page_keeps_the_data_and_user_it_was_sent_with(self, ops, order_type):
        in_app = Template.objects.get(channel="in_app")
        url = reverse("admin:notifier_template_preview", args=[in_app.pk])

        response = ops.post(url, {"data": '{"order_id": "T-9", "carrier": "DHL"}', "user_id": "u_test",
                                  "send_test": "1"}, follow=True)

        assert response.redirect_chain == [(url, 302)]  # a reload of the page sends nothing again
        assert "Test of version 1 sent to u_test" in messages_of(response)
        form = response.context["form"]
        assert form["data"].value() == '{"order_id": "T-9", "carrier": "DHL"}'
        assert form["user_id"].value() == "u_test"
        assert response.context["preview"].content["body"] == "Order T-9 ships."

    def test_a_test_send_is_seen_in_admin_not_through_a_producers_key(self, ops, api, order_type):
        in_app = Template.objects.get(channel="in_app")
        ops.post(reverse("admin:notifier_template_preview", args=[in_app.pk]),
                 {"data": '{"order_id": "T-3"}', "user_id": "u_test", "send_test": "1"})
        notification = Notification.objects.get()

        assert notification.producer.name == "admin-console"
        assert api.get(f"/api/v1/notifications/{notification.id}").status_code == 404
        listed = ops.get(reverse("admin:notifier_notification_changelist"),
                         {"producer__id__exact": notification.producer_id}).content.decode()
        assert str(notification.id) in listed

    def test_send_test_sends_the_previewed_version_whatever_the_users_language_and_settings(
        self, ops, reachable_user, settings, django_capture_on_commit_callbacks, clean_redis
    ):
        make_order_type(channels=("sms",), languages=("en", "pt"))
        old_english = Template.objects.get(language="en")
        ops.post(reverse("admin:notifier_template_change", args=[old_english.pk]),
                 {"body": "Version 2: order {{ order_id }}."})
        # the user reads Portuguese, turned SMS off, and has no SMS left this hour
        Recipient.objects.filter(pk=reachable_user.pk).update(language="pt", channel_preferences={"sms": False})
        settings.NOTIFIER_RATE_LIMITS = {"channel": {"sms": (0, 3600)}, "type": {}}

        with django_capture_on_commit_callbacks(execute=True):
            response = ops.post(reverse("admin:notifier_template_preview", args=[old_english.pk]),
                                {"data": '{"order_id": "T-2"}', "user_id": "u_42", "send_test": "1"}, follow=True)

        assert "Test of version 1 sent to u_42 on sms" in messages_of(response)
        delivery = Delivery.objects.get()
        assert (delivery.template_id, delivery.status, delivery.priority) == (old_english.pk, "queued", "high")
        assert delivery.content["body"] == "Order T-2 ships with UPS."  # v1, English, not the active v2 or pt
        decision = delivery.notification.decisions[0]
        assert decision["decision"] == "queued" and decision["note"].startswith("admin test by ops")
        assert clean_redis.llen("sms.high") == 1  # the deliver queue is woken
        assert deliver_due("sms", "high") == 1
        assert SandboxMessage.objects.get().message["body"] == "Order T-2 ships with UPS."

    @pytest.mark.parametrize("data, user_id, error", [
        ('{"carrier": "DHL"}', "u_42", "Test not sent: missing required variables: order_id"),
        ('{"order_id": "' + "x" * 5000 + '"}', "u_42", "over the 4096-byte limit"),
        ('{"order_id": "1"}', "nobody", "Test not sent: nobody cannot be reached on push: recipient has no active device"),
    ])
    def test_send_test_reports_why_it_was_not_sent_and_stores_nothing(self, ops, order_type, reachable_user,
                                                                       data, user_id, error):
        push = Template.objects.get(channel="push")

        response = ops.post(reverse("admin:notifier_template_preview", args=[push.pk]),
                            {"data": data, "user_id": user_id, "send_test": "1"}, follow=True)

        assert error in messages_of(response)
        assert "Test of version" not in messages_of(response)
        assert not Notification.objects.exists() and not Delivery.objects.exists()
        assert not Recipient.objects.filter(user_id="nobody").exists()

    def test_the_diff_shows_what_changed_between_versions(self, ops, order_type):
        sms = Template.objects.get(channel="sms")
        ops.post(reverse("admin:notifier_template_change", args=[sms.pk]),
                 {"body": "Your order {{ order_id }} is on its way."})
        latest = Template.objects.get(channel="sms", active=True)

        page = ops.get(reverse("admin:notifier_template_diff", args=[latest.pk])).content.decode()

        assert "-Order {{ order_id }} ships with {{ carrier }}." in page
        assert "+Your order {{ order_id }} is on its way." in page


    def test_the_diff_of_the_first_version_compares_it_with_the_next_not_only_version(self, ops, order_type):
        first = Template.objects.get(channel="sms")
        for body in ("Your order {{ order_id }} is on its way.", "Order {{ order_id }} left the warehouse."):
            current = Template.objects.get(channel="sms", active=True)
            ops.post(reverse("admin:notifier_template_change", args=[current.pk]), {"body": body})

        page = ops.get(reverse("admin:notifier_template_diff", args=[first.pk])).content.decode()

        assert "only version" not in page
        assert "Changes from version 1 to version 2" in page
        assert "-Order {{ order_id }} ships with {{ carrier }}." in page
        assert "+Your order {{ order_id }} is on its way." in page
        assert re.findall(r"version (\d)( \(active\))?</option>", page) == [("3", " (active)"), ("2", "")]

    def test_the_diff_of_a_template_with_one_version_says_so_and_offers_no_choice(self, ops, order_type):
        sms = Template.objects.get(channel="sms")

        page = ops.get(reverse("admin:notifier_template_diff", args=[sms.pk])).content.decode()

        assert "Version 1 is the only version." in page
        assert "<select" not in page

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
                            {"name": "billing", "scopes": ["send"], "is_active": "on"}, follow=True)

        key = re.search(r"<code>(nk_[^<]+)</code>", messages_of(response)).group(1)
        assert Producer.objects.get(name="billing").key_hash == hash_key(key)

    def test_a_producers_scopes_are_checkboxes_that_start_at_send(self, ops):
        page = ops.get(reverse("admin:notifier_producer_add")).content.decode()

        for scope in ("send", "users:read", "users:write", "inbox:read", "tokens", "admin"):
            assert re.search(rf'<input type="checkbox" name="scopes" value="{scope}"', page), scope
        assert re.search(r'<input type="checkbox" name="scopes" value="send"[^>]* checked', page)

    def test_editing_a_producers_scopes_saves_them_in_order(self, ops, producer):
        ops.post(reverse("admin:notifier_producer_change", args=[producer.pk]),
                 {"name": producer.name, "scopes": ["tokens", "send"], "is_active": "on"})

        producer.refresh_from_db()
        assert producer.scopes == ["send", "tokens"]

    def test_an_unknown_scope_is_refused(self, ops, producer):
        before = list(producer.scopes)

        response = ops.post(reverse("admin:notifier_producer_change", args=[producer.pk]),
                            {"name": producer.name, "scopes": ["send", "everything"], "is_active": "on"})

        assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
        producer.refresh_from_db()
        assert producer.scopes == before



def recipient_form_data(ops, recipient, **changes) -> dict:
    """The recipient's change form as the admin page fills it in, with some fields changed."""
    form = ops.get(reverse("admin:notifier_recipient_change", args=[recipient.pk])).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {name: "" if value is None else value for name, value in data.items()}
    for name in ("attributes", "channel_preferences", "type_preferences"):
        data[name] = form.fields[name].prepare_value(data[name])
    data.pop("sms_opted_out_at")
    # The topics inline's formset, with the recipient's topics as they are.
    topics = list(recipient.topics.order_by("topic"))
    data.update({"topics-TOTAL_FORMS": str(len(topics)), "topics-INITIAL_FORMS": str(len(topics))})
    for index, topic in enumerate(topics):
        data.update({f"topics-{index}-id": str(topic.pk), f"topics-{index}-recipient": str(recipient.pk),
                     f"topics-{index}-topic": topic.topic})
    data.update(changes)
    return data


class TestValidation:
    """The admin refuses what the API refuses: a value the route step cannot read never reaches the row."""

    @pytest.mark.parametrize("field, value, error", [
        ("type_preferences", '{"order_shipped": true}', "types.order_shipped: Must be an object"),
        ("type_preferences", '{"order_shipped": {"email": "no"}}', "types.order_shipped.email: Must be true or false"),
        ("type_preferences", '{"nope": {"email": false}}', "types.nope: Unknown notification type"),
        ("channel_preferences", '{"pigeon": true}', "channels.pigeon: Unknown channel"),
        ("channel_preferences", '["push"]', "channels: Must be an object"),
        ("timezone", "Mars/Olympus", "is not an IANA time zone"),
        ("language", "English", "is not a language tag"),
        ("attributes", '"str"', "Must be an object."),
        # The API's one input validator (notifier/validation.py) runs on admin forms too: PostgreSQL's jsonb
        # refuses NUL, and deep documents are refused as the API refuses them.
        ("attributes", '{"a": "\\u0000"}', "a: Must not contain a NUL character."),
        ("attributes", "[" * 40 + "]" * 40, "Nested more than 32 levels deep."),
    ])
    def test_a_recipients_bad_preference_is_refused_on_its_field(self, ops, order_type, reachable_user, field,
                                                                 value, error):
        url = reverse("admin:notifier_recipient_change", args=[reachable_user.pk])

        response = ops.post(url, recipient_form_data(ops, reachable_user, **{field: value}))

        assert response.status_code == 200  # the form again, not the redirect of a save
        assert error in str(response.context["adminform"].form.errors[field])
        stored = Recipient.objects.get(pk=reachable_user.pk)
        assert (stored.timezone, stored.channel_preferences, stored.type_preferences) == ("UTC", {}, {})

    @pytest.mark.parametrize("data, error", [
        ('{"order_id": "\\u0000"}', "order_id: Must not contain a NUL character."),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "Nested more than 32 levels deep."),
    ])
    def test_sample_data_goes_through_the_input_validator(self, ops, order_type, data, error):
        template = order_type.templates.get(channel="in_app")

        response = ops.post(reverse("admin:notifier_template_preview", args=[template.pk]),
                            {"data": data, "user_id": "u_42", "send_test": "1"})

        assert response.status_code == 200
        assert error in response.content.decode()
        assert not Notification.objects.exists()

    def test_quiet_hours_need_both_ends(self, ops, reachable_user):
        url = reverse("admin:notifier_recipient_change", args=[reachable_user.pk])

        response = ops.post(url, recipient_form_data(ops, reachable_user, quiet_hours_start="22:00"))

        assert "Set both ends of the quiet hours" in str(response.context["adminform"].form.errors["quiet_hours_end"])
        assert Recipient.objects.get(pk=reachable_user.pk).quiet_hours_start is None

    def test_good_recipient_preferences_are_saved(self, ops, order_type, reachable_user):
        url = reverse("admin:notifier_recipient_change", args=[reachable_user.pk])

        response = ops.post(url, recipient_form_data(
            ops, reachable_user, timezone="Asia/Karachi", channel_preferences='{"sms": false}',
            type_preferences='{"order_shipped": {"email": false}, "marketing": {"push": false}}',
            quiet_hours_start="22:00", quiet_hours_end="07:00", attributes=""))

        assert response.status_code == 302
        stored = Recipient.objects.get(pk=reachable_user.pk)
        assert stored.timezone == "Asia/Karachi" and stored.channel_preferences == {"sms": False}
        assert stored.type_preferences == {"order_shipped": {"email": False}, "marketing": {"push": False}}
        assert stored.attributes == {}  # an emptied JSON box is an empty object, not a refused NULL

    def test_topics_are_added_on_the_recipients_page_and_checked_like_the_apis(self, ops, reachable_user):
        url = reverse("admin:notifier_recipient_change", args=[reachable_user.pk])
        added = {"topics-TOTAL_FORMS": "2", "topics-0-topic": "sports", "topics-0-recipient": str(reachable_user.pk),
                 "topics-1-topic": "no spaces", "topics-1-recipient": str(reachable_user.pk),
                 "attributes": "", "channel_preferences": "", "type_preferences": ""}

        refused = ops.post(url, recipient_form_data(ops, reachable_user, **added))
        saved = ops.post(url, recipient_form_data(ops, reachable_user, **{**added, "topics-TOTAL_FORMS": "1"}))

        assert refused.status_code == 200 and "A topic is 1 to 100 characters" in refused.content.decode()
        assert saved.status_code == 302
        assert list(reachable_user.topics.values_list("topic", flat=True)) == ["sports"]
        assert "sports" in ops.get(url).content.decode()

    def type_form_data(self, **changes) -> dict:
        data = {"key": "order_shipped", "name": "", "category": "transactional", "default_priority": "high",
                "default_channels": '["push", "email"]', "default_language": "en",
                "variables": '{"order_id": {"required": true}}', "rate_limit_action": "suppress",
                "digest_window_seconds": 0, "track_engagement": "default",
                "templates-TOTAL_FORMS": "0", "templates-INITIAL_FORMS": "0"}
        return {**data, **changes}

    @pytest.mark.parametrize("field, value, error", [
        ("variables", '{"order_id": "required"}', "Variable &#x27;order_id&#x27;: give an object"),
        ("variables", '{"order_id": {"type": "date"}}', "type must be one of"),
        ("variables", '["order_id"]', "Must be an object of variable name"),
        ("default_channels", '["fax"]', "Unknown channel &#x27;fax&#x27;"),
        ("default_language", "English", "is not a language tag"),
    ])
    def test_a_types_bad_schema_or_channels_are_refused_on_the_field(self, ops, order_type, field, value, error):
        url = reverse("admin:notifier_notificationtype_change", args=[order_type.pk])

        response = ops.post(url, self.type_form_data(**{field: value}))

        assert response.status_code == 200
        assert error in str(response.context["adminform"].form.errors[field])
        order_type.refresh_from_db()
        assert order_type.default_channels == ["push", "email", "sms", "in_app"]
        assert order_type.variables == {"order_id": {"required": True}, "carrier": {"default": "UPS"}}

    def test_a_marketing_type_cannot_be_critical(self, ops, order_type):
        url = reverse("admin:notifier_notificationtype_change", args=[order_type.pk])

        response = ops.post(url, self.type_form_data(category="marketing", critical="on"))

        assert response.status_code == 200
        assert response.context["adminform"].form.errors["critical"] == [
            "Only a transactional type can be critical (critical skips opt-outs, quiet hours and rate limits)."]
        order_type.refresh_from_db()
        assert order_type.category == "transactional"

    def test_the_model_refuses_a_critical_type_that_is_not_transactional(self):
        with pytest.raises(ValidationError) as refused:
            NotificationType(key="promo", category="marketing", critical=True, default_channels=["email"]).full_clean()

        assert "critical" in refused.value.message_dict

    def test_a_good_type_is_saved(self, ops, order_type):
        url = reverse("admin:notifier_notificationtype_change", args=[order_type.pk])

        response = ops.post(url, self.type_form_data(variables=""))

        assert response.status_code == 302
        order_type.refresh_from_db()
        assert order_type.default_channels == ["push", "email"] and order_type.variables == {}


def test_an_operators_cancel_stops_the_waiting_deliveries_and_says_so_in_their_history(ops, order_type, reachable_user):
    from django.urls import reverse

    from notifier.models import Delivery
    from notifier.pipeline.route import route_due
    from tests.pipeline.test_route import make_notification

    notification = make_notification(order_type, reachable_user, channels=["email"])
    route_due("high")

    ops.post(reverse("admin:notifier_notification_changelist"),
             {"action": "cancel", "_selected_action": [str(notification.id)]})

    delivery = Delivery.objects.get(notification=notification)
    assert delivery.status == "cancelled"
    assert list(delivery.events.values_list("status", "source")) == [("cancelled", "admin")]
    notification.refresh_from_db()
    assert notification.status == "cancelled"
