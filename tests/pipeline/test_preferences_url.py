"""Every email links to its recipient's hosted preference center: `{{ preferences_url }}` in any email
template and the layout's footer. A campaign's shared renders give each recipient their own link, and
tracked email leaves the link as it is (and still parses a campaign's body once)."""
import pytest
from django.test import Client

from notifier.models import Recipient, Template
from notifier.pipeline import render
from notifier.preference_links import preferences_link_read
from notifier.tracking import _tracked_template, click_token, tracked_html
from tests.conftest import make_order_type

pytestmark = pytest.mark.django_db

LINK = r"http://127.0.0.1:8000/preferences/"


def link_in(text: str) -> str:
    start = text.index(LINK)
    return text[start:].split('"')[0].split()[0]


@pytest.fixture
def order_email(db):
    order = make_order_type(channels=("email",))
    template = Template.objects.get(type=order, channel="email")
    template.body = "Manage what we send: {{ preferences_url }}"
    template.save()
    return order, template


def test_every_email_template_sees_the_recipients_preferences_url_and_the_footer_shows_it(order_email):
    order, template = order_email
    recipient = Recipient.objects.create(user_id="u_1", email="u1@example.com")

    content = render.template_render(template, order, {"order_id": "7"}, recipient=recipient)

    link = link_in(content["body"])
    assert preferences_link_read(link.rsplit("/", 1)[1]) == "u_1"
    assert f'<a href="{link}" style="color:#57606a;">Notification preferences</a>' in content["html_body"]
    page = Client().get(link.removeprefix("http://127.0.0.1:8000"))
    assert page.status_code == 200 and "Notification preferences" in page.content.decode()


def test_other_channels_get_no_preferences_url(order_email):
    in_app = make_order_type(key="note", channels=("in_app",))
    template = Template.objects.get(type=in_app)
    template.body = "[{{ preferences_url }}]"
    template.save()

    content = render.template_render(template, in_app, {"order_id": "7"}, recipient=Recipient(user_id="u_1"))

    assert content["body"] == "[]"


def test_a_shared_render_gives_each_recipient_their_own_link_and_renders_the_template_once(order_email, monkeypatch):
    order, template = order_email
    calls = []
    real = render.template_render
    monkeypatch.setattr(render, "template_render", lambda *a, **k: calls.append(1) or real(*a, **k))
    renders, data = render.SharedRenders(), {"order_id": "7"}

    contents = {user: renders.render(template, order, data, Recipient(user_id=user), None) for user in ("a", "b", "c")}

    assert len(calls) == 1
    for user, content in contents.items():
        assert preferences_link_read(link_in(content["body"]).rsplit("/", 1)[1]) == user
        assert link_in(content["html_body"]) == link_in(content["body"])
        assert render.SharedRenders.PREFERENCES_PLACEHOLDER not in str(content)


def test_a_template_that_filters_the_link_is_rendered_per_recipient(order_email):
    order, template = order_email
    template.body = "Manage: {{ preferences_url|upper }}"
    template.save()
    renders = render.SharedRenders()

    content = renders.render(template, order, {"order_id": "7"}, Recipient(user_id="u_9"), None)

    assert "NOTIFIER.INVALID" not in content["body"]
    assert content["body"].startswith("Manage: HTTP://127.0.0.1:8000/PREFERENCES/")


def test_tracked_email_keeps_the_preferences_link_and_parses_a_campaigns_bodies_once(order_email):
    order, template = order_email
    _tracked_template.cache_clear()
    for n, user in enumerate(("a", "b", "c")):
        html = render.template_render(template, order, {"order_id": "7"}, recipient=Recipient(user_id=user))["html_body"]
        html = html.replace("<p>Order", '<p><a href="https://shop.example/o/7">Order</a>')

        tracked = tracked_html(html, n)

        assert link_in(html) in tracked  # not rewritten to a click redirect
        assert click_token(n, 0) in tracked
    assert _tracked_template.cache_info().misses == 1
