"""The hosted preference center in a real browser, against the real API: a user switches a channel off and
the next notification of that type skips it; quiet hours saved in another time zone hold a push; the
form works without JavaScript; a bad or expired link is a clear page."""
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests

from notifier.pipeline.route import route_due
from notifier.preference_links import preferences_link_issue
from tests.browser.conftest import DOCS_IMG
from tests.conftest import make_order_type

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def mint(server, producer, user_id: str) -> str:
    response = requests.post(f"{server.url}/api/v1/users/{user_id}/preferences-link", timeout=5,
                             headers={"Authorization": f"Bearer {producer.key}"})
    assert response.status_code == 201
    return response.json()["url"].replace("http://127.0.0.1:8000", server.url)


def notify(server, producer, user_id: str, **fields) -> str:
    response = requests.post(f"{server.url}/api/v1/notifications", timeout=5,
                             headers={"Authorization": f"Bearer {producer.key}"},
                             json={"type": "order_shipped", "user_id": user_id, "data": {"order_id": "77"}, **fields})
    assert response.status_code == 202, response.text
    return response.json()["notifications"][0]["id"]


def decisions(server, producer, notification_id: str) -> dict:
    detail = requests.get(f"{server.url}/api/v1/notifications/{notification_id}", timeout=5,
                          headers={"Authorization": f"Bearer {producer.key}"}).json()
    return {d["channel"]: d for d in detail["decisions"]}


def switch(page, group: str, channel: str):
    return page.get_by_role("group", name=group, exact=True).get_by_role("switch", name=channel, exact=True)


def test_a_user_switches_sms_off_for_a_type_and_its_next_notification_skips_sms(
        page, api_server, producer, order_type, reachable_user):
    order_type.name = "Order shipped"
    order_type.save()
    make_order_type(key="security_alert", name="Security alert", channels=("email", "sms"), critical=True)
    make_order_type(key="weekly_offers", name="Weekly offers", channels=("email", "push"), category="marketing")
    server = api_server(NOTIFIER_BRAND_NAME="Acme Shop", NOTIFIER_BRAND_ACCENT_COLOR="#0f766e")
    page.goto(mint(server, producer, "u_42"))
    sms = switch(page, "Order shipped", "SMS")
    assert sms.is_checked()

    sms.click()
    page.get_by_role("button", name="Save preferences").click()

    page.get_by_role("status").filter(has_text="Your preferences are saved.").wait_for()
    notification_id = notify(server, producer, "u_42")
    route_due("high")
    decided = decisions(server, producer, notification_id)
    assert decided["sms"]["decision"] == "suppressed"
    assert decided["sms"]["reason"] == "type opted out (order_shipped on sms)"
    assert {decided[c]["decision"] for c in ("push", "email", "in_app")} == {"queued"}
    assert page.get_by_role("group", name="Security alert (always on)").get_by_role("switch", name="SMS").is_disabled()
    assert page.get_by_text("Always on: this is a critical notification").is_visible()
    # Every control has a label, and no tabindex reorders the page's focus.
    unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.outerHTML)""")
    assert unlabelled == []
    assert page.evaluate("document.querySelectorAll('[tabindex]:not([tabindex=\"-1\"]):not([tabindex=\"0\"])').length") == 0
    page.screenshot(path=str(DOCS_IMG / "preference-center.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("window.scrollTo(0, 0)")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    page.screenshot(path=str(DOCS_IMG / "preference-center-phone.png"))


def test_quiet_hours_saved_in_another_time_zone_hold_a_push(page, api_server, producer, order_type, reachable_user):
    server = api_server()
    zone = "Pacific/Auckland"
    local = datetime.now(ZoneInfo(zone))
    start, end = (local - timedelta(hours=1)).strftime("%H:%M"), (local + timedelta(hours=1)).strftime("%H:%M")
    page.goto(mint(server, producer, "u_42"))

    page.get_by_role("switch", name="Hold non-urgent push, email and SMS during quiet hours").check()
    page.get_by_label("From").fill(start)
    page.get_by_label("Until").fill(end)
    page.get_by_label("Time zone").select_option(zone)
    page.get_by_role("button", name="Save preferences").click()
    page.get_by_role("status").filter(has_text="Your preferences are saved.").wait_for()

    notification_id = notify(server, producer, "u_42", priority="medium", channels=["push"])
    route_due("medium")
    decided = decisions(server, producer, notification_id)
    assert decided["push"]["decision"] == "held"
    assert decided["push"]["reason"] == f"held for quiet hours until {end} {zone}"
    preferences = requests.get(f"{server.url}/api/v1/users/u_42/notification-preferences", timeout=5,
                               headers={"Authorization": f"Bearer {producer.key}"}).json()
    assert preferences["quiet_hours"] == {"start": start, "end": end, "timezone": zone}


def test_without_javascript_the_form_posts_and_the_page_says_it_is_saved(browser, api_server, producer, order_type):
    server = api_server()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(mint(server, producer, "u_nojs"))

    switch(page, "Channels", "Email").uncheck()
    page.get_by_label("Bundle notifications that can wait").select_option("daily")
    with page.expect_navigation():
        page.get_by_role("button", name="Save preferences").click()

    assert page.url.endswith("?saved=1")
    assert page.get_by_role("status").inner_text() == "Your preferences are saved."
    assert not switch(page, "Channels", "Email").is_checked()
    preferences = requests.get(f"{server.url}/api/v1/users/u_nojs/notification-preferences", timeout=5,
                               headers={"Authorization": f"Bearer {producer.key}"}).json()
    assert preferences["channels"]["email"] is False and preferences["digest"] == "daily"
    context.close()


def test_a_bad_or_expired_link_shows_a_clear_page(page, api_server):
    server = api_server()
    expired, _ = preferences_link_issue("u_42", 60, now=datetime.now().timestamp() - 3600)

    for url, status, heading in [
        (f"{server.url}/preferences/not-a-link", 400, "This link is not valid"),
        (expired.replace("http://127.0.0.1:8000", server.url), 410, "This link has expired"),
    ]:
        response = page.goto(url)
        assert response.status == status
        assert page.get_by_role("heading", level=1).inner_text() == heading
