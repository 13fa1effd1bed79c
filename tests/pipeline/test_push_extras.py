"""A push template's badge and sound, and a request's collapse_key, travel from the API and the template
through rendering into the Message a provider adapter gets."""
import pytest

from notifier.models import Notification, SandboxMessage, Template
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.render import push_payload_size, template_problems, template_render
from notifier.pipeline.route import route_due

pytestmark = pytest.mark.django_db


def push_template(order_type, **fields) -> Template:
    template = Template.objects.get(type=order_type, channel="push")
    for name, value in fields.items():
        setattr(template, name, value)
    template.save()
    return template


def test_a_push_template_renders_its_badge_and_sound(order_type):
    template = push_template(order_type, badge=3, sound="chime.caf")

    content = template_render(template, order_type, {"order_id": "7"})

    assert (content["badge"], content["sound"]) == (3, "chime.caf")


def test_badge_zero_is_kept_because_it_clears_the_badge(order_type):
    content = template_render(push_template(order_type, badge=0), order_type, {"order_id": "7"})

    assert content["badge"] == 0 and "sound" not in content


def test_a_push_template_without_them_sends_neither(order_type):
    content = template_render(push_template(order_type), order_type, {"order_id": "7"})

    assert "badge" not in content and "sound" not in content


def test_the_payload_size_counts_badge_and_sound(order_type):
    plain = template_render(push_template(order_type), order_type, {"order_id": "7"})
    extras = {**plain, "badge": 12, "sound": "chime.caf"}

    assert push_payload_size(extras, {"order_id": "7"}) - push_payload_size(plain, {"order_id": "7"}) == len(
        ', "badge": 12, "sound": "chime.caf"'  # json.dumps as the APNs adapter measures
    )


@pytest.mark.parametrize("channel", ["email", "sms", "in_app"])
def test_only_push_templates_take_a_badge_or_sound(order_type, channel):
    problems = template_problems(order_type, channel, {"body": "hi", "badge": 1, "sound": "default"})

    assert set(problems) == {"badge", "sound"}


def test_badge_sound_and_collapse_key_reach_the_provider_message(order_type, reachable_user, api):
    push_template(order_type, badge=5, sound="default")
    response = api.post("/api/v1/notifications", {
        "type": "order_shipped", "user_id": "u_42", "data": {"order_id": "7"}, "channels": ["push", "sms"],
        "collapse_key": "order-7",
    }, format="json")
    assert response.status_code == 202, response.content
    route_due("high")

    deliver_due("push", "high")
    deliver_due("sms", "high")

    pushes = [m.message for m in SandboxMessage.objects.filter(channel="push")]
    assert len(pushes) == 2
    for message in pushes:
        assert (message["badge"], message["sound"], message["collapse_key"]) == (5, "default", "order-7")
    [sms] = SandboxMessage.objects.filter(channel="sms")
    assert (sms.message["badge"], sms.message["sound"]) == (None, "")


class TestAPI:
    def test_a_notification_keeps_its_collapse_key_and_shows_it(self, api, order_type, reachable_user):
        response = api.post("/api/v1/notifications", {
            "type": "order_shipped", "user_id": "u_42", "data": {"order_id": "7"}, "collapse_key": "order-7",
        }, format="json")

        [item] = response.json()["notifications"]
        assert Notification.objects.get(id=item["id"]).collapse_key == "order-7"
        assert api.get(f"/api/v1/notifications/{item['id']}").json()["collapse_key"] == "order-7"

    @pytest.mark.parametrize("collapse_key", ["x" * 65, "é" * 33, 7, ["a"]])
    def test_a_collapse_key_apns_would_refuse_is_400(self, api, order_type, reachable_user, collapse_key):
        response = api.post("/api/v1/notifications", {
            "type": "order_shipped", "user_id": "u_42", "data": {"order_id": "7"}, "collapse_key": collapse_key,
        }, format="json")

        if isinstance(collapse_key, int):  # DRF takes a number as its string form: "7" is a fine key
            assert response.status_code == 202
            return
        assert response.status_code == 400
        assert "collapse_key" in response.json()["error"]["fields"]

    def test_templates_api_publishes_and_lists_badge_and_sound(self, admin_api, order_type):
        response = admin_api.post("/api/v1/templates", {
            "type": "order_shipped", "channel": "push", "language": "en", "title": "Shipped",
            "body": "Order {{ order_id }}", "badge": 1, "sound": "default",
        }, format="json")

        assert response.status_code == 201, response.content
        assert (response.json()["badge"], response.json()["sound"]) == (1, "default")
        active = Template.objects.get(type=order_type, channel="push", active=True)
        assert (active.badge, active.sound, active.version) == (1, "default", 2)
        listed = admin_api.get("/api/v1/templates?type=order_shipped").json()["templates"]
        assert {(t["channel"], t["version"]): (t["badge"], t["sound"]) for t in listed}[("push", 2)] == (1, "default")

    def test_templates_api_refuses_badge_and_sound_off_push_and_a_negative_badge(self, admin_api, order_type):
        email = admin_api.post("/api/v1/templates", {
            "type": "order_shipped", "channel": "email", "language": "en", "subject": "s", "body": "b",
            "badge": 1, "sound": "default",
        }, format="json")
        negative = admin_api.post("/api/v1/templates", {
            "type": "order_shipped", "channel": "push", "language": "en", "body": "b", "badge": -1,
        }, format="json")

        assert email.status_code == 400 and {"badge", "sound"} <= set(email.json()["error"]["fields"])
        assert negative.status_code == 400 and "badge" in negative.json()["error"]["fields"]
