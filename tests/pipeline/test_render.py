"""Rendering admin-edited templates: the sandbox, variables, channel limits and the email layout."""
import pytest
from django.test import override_settings

from notifier.models import NotificationType, Template
from notifier.pipeline.render import (
    RenderError,
    fcm_payload_size,
    push_payload_size,
    template_problems,
    template_render,
    template_syntax_error,
    variable_errors,
)

pytestmark = pytest.mark.django_db


def make_type(category="transactional", variables=None, key="greeting"):
    return NotificationType.objects.get_or_create(key=key, defaults=dict(
        category=category, default_channels=["email"],
        variables=variables if variables is not None else {"name": {"required": True}},
    ))[0]


def render(channel="email", data=None, notification_type=None, **fields):
    notification_type = notification_type or make_type()
    fields.setdefault("body", "Hi {{ name }}")
    template = Template(type=notification_type, channel=channel, language="en", **fields)
    return template_render(template, notification_type, data if data is not None else {"name": "Ana"})


class TestTheSandbox:
    def test_settings_are_not_reachable_and_render_empty(self):
        content = render(body="key={{ settings.SECRET_KEY }}{{ SECRET_KEY }}")

        assert content["body"] == "key="

    @pytest.mark.parametrize("source", [
        "{% load static %}{% static 'x' %}",
        "{% load log %}",
        "{% include 'admin/base.html' %}",
        "{% extends 'email/base.html' %}",
        "{% debug %}",
        "{% url 'admin:index' %}",
        "{{ name.__class__ }}",
        "{{ name.__class__.__mro__.1.__subclasses__ }}",
        "{{ name|safe }}",
        "{% autoescape off %}{{ name }}{% endautoescape %}",
        "{{ items|dictsort:'__class__' }}",
    ])
    def test_tags_and_lookups_that_reach_outside_the_data_are_refused(self, source):
        problem = template_syntax_error(source)

        assert problem is not None and problem.startswith("Template syntax error")

    def test_the_api_refuses_to_publish_a_template_that_loads_a_tag_library(self, admin_api):
        make_type()

        response = admin_api.post("/api/v1/templates", {
            "type": "greeting", "channel": "email", "language": "en", "subject": "Hi",
            "body": "{% load admin_urls %}hello",
        }, format="json")

        assert response.status_code == 400
        assert "'load'" in response.json()["error"]["fields"]["body"][0]
        assert not Template.objects.exists()

    @pytest.mark.parametrize("source, problem", [
        ("{% load static %}", "The tag 'load' is not allowed in notifier templates (line 1)."),
        ("Hi\n{% include 'admin/base.html' %}", "The tag 'include' is not allowed in notifier templates (line 2)."),
        ("{% if a %}{% url 'admin:index' %}{% endif %}",
         "The tag 'url' is not allowed in notifier templates (line 1)."),
        ("{% autoescape off %}{{ name }}{% endautoescape %}",
         "The tag 'autoescape' is not allowed in notifier templates (line 1)."),
        ("{{ name|safe }}", "The filter 'safe' is not allowed in notifier templates."),
        ("{{ items|dictsort:'x' }}", "The filter 'dictsort' is not allowed in notifier templates."),
        ("{% shout %}", "Unknown tag 'shout' on line 1."),
        ("{% if a %}x{% endfor %}", "Unexpected tag 'endfor' on line 1, expected 'elif', 'else' or 'endif'."),
        ("{{ name|shout }}", "Unknown filter 'shout'."),
    ])
    def test_a_refused_or_unknown_tag_is_named_without_suggesting_to_load_it(self, source, problem):
        assert template_syntax_error(source) == f"Template syntax error: {problem}"

    @pytest.mark.parametrize("field, source, problem", [
        ("body", "{{ actor ", "'{{' on line 1 is not closed"),
        ("subject", "Hi {% if vip VIP", "'{%' on line 1 is not closed"),
        ("html_body", "<p>\n{# note</p>", "'{#' on line 2 is not closed"),
        ("title", "{{ actor\n}}", "'{{' on line 1 is not closed"),  # Django reads a tag split over lines as text
        ("action_url", "https://example.com/{{ id", "'{{' on line 1 is not closed"),
    ])
    def test_a_tag_left_open_is_refused_at_publish_on_its_field(self, field, source, problem):
        problems = template_problems(make_type(), "email", {"subject": "Hi", "body": "Hi", field: source})

        assert list(problems) == [field]
        assert problem in problems[field]

    def test_a_published_template_with_a_tag_left_open_fails_to_render_rather_than_send_it_as_text(self):
        with pytest.raises(RenderError, match="is not closed"):
            render(body="Hi {{ name ")

    def test_braces_inside_verbatim_and_comment_blocks_are_still_text(self):
        content = render(body="{% verbatim %}{{ name {% endverbatim %}{% comment %}{{ todo{% endcomment %}!")

        assert content["body"] == "{{ name !"

    def test_ordinary_template_language_still_works(self):
        content = render(body="{% if count > 1 %}{{ count }} items{% else %}one item{% endif %} {{ name|upper }}",
                         data={"name": "ana", "count": 3})

        assert content["body"] == "3 items ANA"


class TestTheSandboxBoundsWhatATemplateBuilds:
    """A few characters of template must not make a worker allocate gigabytes. Each would, unbounded."""

    # Arguments just over the limits, so that without them the test fails fast instead of exhausting memory.
    @pytest.mark.parametrize("source, problem", [
        ('{{ name|center:"100000" }}', "|center:'100000' is over the limit of 1000"),
        ('{{ name|ljust:"100000" }}', "|ljust:'100000' is over the limit of 1000"),
        ('{{ name|rjust:"100000" }}', "|rjust:'100000' is over the limit of 1000"),
        ('{{ name|stringformat:"100000s" }}', "|stringformat:'100000s' is over the limit of 1000"),
        ('{{ 1.5|floatformat:"100000" }}', "|floatformat:'100000' is over the limit of 1000"),
        ("{% lorem 1000 w %}", "{% lorem 1000 %} is over the limit of 50"),
        ("{% lorem 1000 p %}", "{% lorem 1000 %} is over the limit of 50"),
        ("{% lorem count w %}", "{% lorem 1000 %} is over the limit of 50"),  # a count from the data
        ("{% for a in items %}{% for b in items %}{% for c in items %}x{% endfor %}{% endfor %}{% endfor %}",
         "loops ran more than 10000 iterations"),
        ("{% with a=name|add:name %}{% with b=a|add:a %}{% with c=b|add:b %}{% with d=c|add:c %}"
         "{% with e=d|add:d %}{{ e }}{% endwith %}{% endwith %}{% endwith %}{% endwith %}{% endwith %}",
         "|add built a value of 320000 items, over the limit of 200000"),
        ("{% for i in items %}{{ name }}{% endfor %}", "the output is 1000000 characters, over the limit of 200000"),
    ])
    def test_a_template_that_would_build_too_much_fails_with_a_clear_error(self, source, problem):
        data = {"name": "x" * 10_000, "count": 1000, "items": list(range(100))}

        with pytest.raises(RenderError) as refused:
            render(channel="in_app", body=source, data=data)

        assert "failed to render: " + problem in str(refused.value)

    def test_an_html_part_too_long_fails_too(self):
        with pytest.raises(RenderError, match="over the limit of 200000"):
            render(html_body="{% for i in items %}<p>{{ name }}</p>{% endfor %}",
                   data={"name": "x" * 5000, "items": list(range(50))})

    def test_reasonable_widths_counts_and_loops_still_render(self):
        content = render(channel="in_app", body='[{{ name|center:"9" }}]{% lorem 3 w %} '
                         '{% for i in items %}{{ i }}{% endfor %} {{ 1.25|floatformat:2 }} {{ 7|stringformat:"03d" }}',
                         data={"name": "Ana", "items": [1, 2, 3]})

        assert content["body"] == "[   Ana   ]lorem ipsum dolor 123 1.25 007"


class TestEscaping:
    def test_html_email_escapes_variables_and_the_text_part_does_not(self):
        content = render(html_body="<p>Hi {{ name }}</p>", data={"name": "<script>&"})

        assert "<p>Hi &lt;script&gt;&amp;</p>" in content["html_body"]
        assert content["body"] == "Hi <script>&"

    def test_push_and_sms_render_plain_text(self):
        assert render("push", data={"name": "Tom & Jerry"}, title="For {{ name }}")["title"] == "For Tom & Jerry"
        assert render("sms", data={"name": "<b>"})["body"] == "Hi <b>"


class TestEmailLayout:
    def test_the_html_part_is_wrapped_in_the_base_layout_with_a_plain_text_alternative(self):
        content = render(subject="Welcome {{ name }}", body="", html_body="<p>Hi <b>{{ name }}</b></p>")

        assert content["html_body"].startswith("<!DOCTYPE html>")
        assert "<title>Welcome Ana</title>" in content["html_body"]
        assert "<p>Hi <b>Ana</b></p>" in content["html_body"]
        assert content["body"] == "Hi Ana"  # derived from the HTML when the template has no text part

    def test_a_newline_in_a_subject_variable_cannot_inject_a_header(self):
        content = render(subject="Hi {{ name }}", data={"name": "Ana\nBcc: all@example.com"})

        assert "\n" not in content["subject"]


class TestVariables:
    def test_a_missing_required_variable_is_named(self):
        with pytest.raises(RenderError, match="missing required variables: name"):
            render(data={})

    def test_a_value_of_the_wrong_type_is_named(self):
        notification_type = make_type(variables={"count": {"type": "integer", "default": 1}})

        assert variable_errors(notification_type, {"count": "three"}) == {
            "count": "Must be of type integer (type 'greeting')."}
        assert variable_errors(notification_type, {}) == {}
        assert variable_errors(notification_type, {"count": True}) != {}

    def test_the_api_answers_400_naming_a_variable_of_the_wrong_type(self, api):
        make_type(variables={"count": {"type": "integer"}})

        response = api.post("/api/v1/notifications", {"type": "greeting", "user_id": "u_1",
                                                      "data": {"count": "3"}}, format="json")

        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["data.count"]


class TestChannelLimits:
    def test_a_push_payload_over_4_kb_fails_with_a_clear_error(self):
        with pytest.raises(RenderError, match="push payload is .* bytes, over the 4096-byte limit"):
            render("push", data={"name": "x" * 5000})

    def test_data_that_fits_apns_but_not_fcm_fails_with_fcms_limit(self):
        # FCM data values are strings: a nested object travels JSON-encoded, its Cyrillic as \u escapes
        data = {"name": "Ana", "meta": {"note": "ж" * 700}}

        assert push_payload_size({"title": "", "body": "Hi Ana"}, data) < 4096
        assert fcm_payload_size({"title": "", "body": "Hi Ana"}, data) > 4096
        with pytest.raises(RenderError, match=r"FCM payload \(notification and data\) is \d+ bytes, over FCM's"):
            render("push", data=data, notification_type=make_type(variables={}))

    def test_the_fcm_size_is_measured_on_the_message_the_fcm_adapter_builds(self):
        from firebase_admin import messaging

        from notifier.providers.base import Message
        from notifier.providers.fcm import FCMProvider

        content = {"title": "Hello", "body": "Ünïcode body", "action_url": "https://x.example/o/1"}
        data = {"name": "Ana", "count": 3, "meta": {"note": "ж" * 10}}
        message = Message(delivery_id=1, notification_id="n-1", channel="push", to="token", title="Hello",
                          body="Ünïcode body", action_url=content["action_url"], data={"notification_id": "n-1", **data})

        encoded = messaging._MessagingService.encode_message(FCMProvider().fcm_message_for(message))
        counted = {"data": encoded["data"], "notification": encoded["notification"]}
        assert fcm_payload_size(content, data, "n-1") == len(
            __import__("json").dumps(counted, ensure_ascii=False, separators=(",", ":")).encode())

    def test_a_push_payload_under_4_kb_renders(self):
        assert render("push", data={"name": "x" * 1500})["body"].startswith("Hi xxx")

    def test_an_sms_over_the_configured_segments_fails(self):
        with override_settings(NOTIFIER_PROVIDER_CONFIG={"twilio": {"max_segments": "2"}}):
            with pytest.raises(RenderError, match=r"SMS needs 3 segments \(GSM-7\), more than the 2 allowed"):
                render("sms", data={"name": "a" * 400})
            assert render("sms", data={"name": "a" * 300})["body"]

    def test_an_email_subject_over_255_characters_fails(self):
        with pytest.raises(RenderError, match="email subject is 303 characters"):
            render(subject="Hi {{ name }}", data={"name": "a" * 300})

    @pytest.mark.parametrize("field, limit", [("title", 255), ("action_url", 1000)])
    def test_an_in_app_field_longer_than_the_inbox_stores_fails_naming_the_field(self, field, limit):
        with pytest.raises(RenderError, match=f"in-app {field} is {limit + 1} characters, over the {limit} the inbox stores"):
            render("in_app", data={"name": "a" * (limit + 1)}, **{field: "{{ name }}"})
        assert render("in_app", data={"name": "a" * limit}, **{field: "{{ name }}"})[field] == "a" * limit


class TestMarketingEmail:
    def test_a_marketing_email_template_without_an_unsubscribe_link_is_refused(self):
        marketing = make_type(category="marketing", key="sale")

        problems = template_problems(marketing, "email", {"subject": "Sale", "html_body": "<p>Sale!</p>"})

        assert "unsubscribe" in problems["html_body"]
        assert template_problems(marketing, "email", {"html_body": '<a href="{{ unsubscribe_url }}">x</a>'}) == {}
        assert template_problems(make_type(key="tx"), "email", {"html_body": "<p>Receipt</p>"}) == {}

    def test_a_marketing_email_carries_one_click_unsubscribe_headers(self):
        marketing = make_type(category="marketing", key="sale")

        content = render(notification_type=marketing, subject="Sale",
                         body="Sale! Unsubscribe: {{ unsubscribe_url }}",
                         html_body='<a href="{{ unsubscribe_url }}">Unsubscribe</a>')

        url = content["headers"]["List-Unsubscribe"].strip("<>")
        assert url.startswith("http://127.0.0.1:8000/api/v1/unsubscribe/")
        assert content["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert url in content["body"] and f'href="{url}"' in content["html_body"]

    @pytest.mark.parametrize("body", [
        "Sale! {% comment %}{{ unsubscribe_url }}{% endcomment %}",
        "Sale! {% if false %}Unsubscribe: {{ unsubscribe_url }}{% endif %}",
        "Sale! {{ unsubscribe_url|upper }}",
    ])
    def test_a_marketing_email_whose_text_part_renders_without_the_link_fails(self, body):
        marketing = make_type(category="marketing", key="sale")
        assert template_problems(marketing, "email", {"subject": "Sale", "body": body}) == {}  # publish passes

        with pytest.raises(RenderError, match="must show its unsubscribe link in the text part"):
            render(notification_type=marketing, subject="Sale", body=body,
                   html_body='<a href="{{ unsubscribe_url }}">Unsubscribe</a>')

    def test_a_marketing_email_whose_html_part_renders_without_the_link_fails(self, monkeypatch):
        from notifier.pipeline import render as render_module

        marketing = make_type(category="marketing", key="sale")
        # the base layout adds an unsubscribe footer to every marketing HTML part; without it, the
        # template's own link must survive rendering
        monkeypatch.setattr(render_module, "email_layout", lambda html, subject, *links: html)

        with pytest.raises(RenderError, match="must show its unsubscribe link in the HTML part"):
            render(notification_type=marketing, subject="Sale", body="Sale! {{ unsubscribe_url }}",
                   html_body='<p>Sale!{% comment %}<a href="{{ unsubscribe_url }}">x</a>{% endcomment %}</p>')
        content = render(notification_type=marketing, subject="Sale", body="Sale! {{ unsubscribe_url }}",
                         html_body='<p>Sale! <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')
        assert "/api/v1/unsubscribe/" in content["html_body"]

    def test_the_text_part_made_from_a_marketing_html_part_keeps_the_link(self):
        marketing = make_type(category="marketing", key="sale")

        content = render(notification_type=marketing, subject="Sale", body="",
                         html_body='<p>Sale!</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>')

        url = content["headers"]["List-Unsubscribe"].strip("<>")
        assert content["body"] == f"Sale!Unsubscribe\n\nUnsubscribe: {url}"
