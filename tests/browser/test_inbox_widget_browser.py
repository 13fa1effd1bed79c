"""The inbox widget (static/notifier/inbox.js) in a real browser, embedded in a producer's page on another
origin, against the real API as `make run` serves it (granian, and the stream server on its own port: CORS,
the recipient token, the SSE stream): the badge, live arrival within a second of the API call, reading,
older pages, the stream's reconnection with Last-Event-ID, one user's token never showing another's items,
and /demo/inbox, live."""
import time

import pytest
import redis
import requests
from django.conf import settings

from notifier.inbox import inbox_channel
from notifier.models import InboxItem, NotificationType, Template
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from tests.browser.conftest import DOCS_IMG, SAFE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def note_type(db):
    """An in-app type whose item is whatever the test sends."""
    note = NotificationType.objects.create(key="note", name="Note", default_channels=["in_app"],
                                           default_priority="high",
                                           variables={"title": {"required": True}, "body": {"default": ""},
                                                      "url": {"default": ""}})
    Template.objects.create(type=note, channel="in_app", language="en", title="{{ title }}", body="{{ body }}",
                            action_url="{{ url }}")
    return note


def send(api, user_id: str, *titles: str, **data):
    for title in titles:
        response = api.post("/api/v1/notifications", {"type": "note", "user_id": user_id,
                                                      "data": {"title": title, **data}}, format="json")
        assert response.status_code == 202
    route_due("high")
    deliver_due("in_app", "high")


def host_page(server, token: str, **attributes) -> str:
    extra = "".join(f' {name.replace("_", "-")}="{value}"' for name, value in attributes.items())
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script src="{server.url}/static/notifier/inbox.js" defer></script></head>
<body style="margin:0;font-family:sans-serif;background:#f6f8fa;height:640px">
<header style="display:flex;justify-content:space-between;align-items:center;padding:8px 16px;background:#fff;
border-bottom:1px solid #d0d7de"><strong>Acme Shop</strong>
<notifier-inbox user-token="{token}" api="{server.url}" stream="{server.stream_url}"{extra}></notifier-inbox></header>
</body></html>"""


def open_shop(page, host_pages, server, token: str, **attributes):
    site = host_pages.serve(server.host_port, {"/": host_page(server, token, **attributes)})
    page.goto(site + "/")
    return page


def token_of(server, producer, user_id: str) -> str:
    return requests.post(f"{server.url}/api/v1/users/{user_id}/token", timeout=5,
                         headers={"Authorization": f"Bearer {producer.key}"}).json()["token"]


def unread_of(server, token: str, user_id: str) -> int:
    return requests.get(f"{server.url}/api/v1/users/{user_id}/notifications/unread-count", timeout=5,
                        headers={"Authorization": f"Bearer {token}"}).json()["unread_count"]


def badge(page):
    return page.locator("notifier-inbox .badge")


def items(page):
    return page.locator("notifier-inbox li")


def wait_for_stream(user_id: str, open_streams: int = 1):
    client = redis.Redis.from_url(settings.REDIS_URL)
    wait_until_true(lambda: client.pubsub_numsub(inbox_channel(user_id))[0][1] >= open_streams)


def wait_until_true(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_the_badge_counts_unread_and_a_notification_sent_through_the_api_appears_within_a_second(
        page, api_server, host_pages, producer, api, note_type, start_worker):
    start_worker(**SAFE)
    server = api_server()
    send(api, "u_a", "Your order shipped", "Payment received", "Welcome to Acme", body="Thanks for shopping with us.")
    open_shop(page, host_pages, server, token_of(server, producer, "u_a"))
    badge(page).filter(has_text="3").wait_for()
    assert page.get_by_role("button", name="Notifications, 3 unread").is_visible()
    page.get_by_role("button", name="Notifications, 3 unread").click()
    assert items(page).count() == 3
    wait_for_stream("u_a")

    sent_at = time.monotonic()
    response = requests.post(f"{server.url}/api/v1/notifications", timeout=5,
                             headers={"Authorization": f"Bearer {producer.key}"},
                             json={"type": "note", "user_id": "u_a",
                                   "data": {"title": "Your parcel is out for delivery",
                                            "body": "It arrives today between 10:00 and 12:00.",
                                            "url": "https://shop.example/orders/789"}})
    items(page).filter(has_text="Your parcel is out for delivery").wait_for(timeout=5000)
    arrived_after = time.monotonic() - sent_at

    assert response.status_code == 202
    assert arrived_after < 1.0, f"took {arrived_after:.3f} s"
    badge(page).filter(has_text="4").wait_for(timeout=2000)
    first = items(page).first
    assert first.locator("a").get_attribute("href") == "https://shop.example/orders/789"
    assert "It arrives today" in first.inner_text()
    page.screenshot(path=str(DOCS_IMG / "inbox-widget.png"), clip={"x": 0, "y": 0, "width": 1000, "height": 440})


def test_clicking_an_item_marks_it_read_and_mark_all_read_empties_the_badge(page, api_server, host_pages, producer,
                                                                             api, note_type):
    server = api_server()
    send(api, "u_b", "First", "Second", "Third")
    token = token_of(server, producer, "u_b")
    open_shop(page, host_pages, server, token)
    bell = page.get_by_role("button", name="Notifications, 3 unread")
    bell.focus()
    page.keyboard.press("Enter")  # the keyboard opens it, Escape closes it and gives the focus back
    assert page.get_by_role("dialog", name="Notifications").is_visible()
    page.keyboard.press("Escape")
    assert page.get_by_role("dialog", name="Notifications").is_hidden()
    assert bell.evaluate("b => b.getRootNode().activeElement === b")
    bell.click()

    items(page).filter(has_text="Second").get_by_role("button").click()

    badge(page).filter(has_text="2").wait_for()
    assert unread_of(server, token, "u_b") == 2
    listed = requests.get(f"{server.url}/api/v1/users/u_b/notifications", timeout=5,
                          headers={"Authorization": f"Bearer {token}"}).json()["notifications"]
    assert {n["title"]: n["read"] for n in listed} == {"First": False, "Second": True, "Third": False}
    assert items(page).filter(has_text="Second").locator(".unread").count() == 0

    page.get_by_role("button", name="Mark all read").click()

    badge(page).wait_for(state="hidden")
    assert unread_of(server, token, "u_b") == 0
    assert page.get_by_role("button", name="Notifications", exact=True).is_visible()


def test_older_pages_load_by_cursor_and_data_is_shown_as_text(page, api_server, host_pages, producer, api, note_type):
    server = api_server()
    send(api, "u_c", *[f"Item {n}" for n in range(1, 25)])
    send(api, "u_c", '<img src=x onerror="document.title=\'pwned\'">', url="javascript:document.title='pwned'")
    open_shop(page, host_pages, server, token_of(server, producer, "u_c"))
    page.get_by_role("button", name="Notifications, 25 unread").click()
    assert items(page).count() == 20

    page.get_by_role("button", name="Load older").click()

    items(page).nth(24).wait_for()
    assert items(page).count() == 25
    assert page.get_by_role("button", name="Load older").is_hidden()
    assert items(page).locator(".title").all_inner_texts()[-3:] == ["Item 3", "Item 2", "Item 1"]
    hostile = items(page).first
    assert hostile.locator(".title").inner_text() == '<img src=x onerror="document.title=\'pwned\'">'
    assert hostile.locator("a").count() == 0 and hostile.locator("img").count() == 0  # no javascript: link
    assert page.title() == "Shop"


def test_the_stream_reconnects_with_last_event_id_and_replays_what_arrived_meanwhile(
        page, api_server, host_pages, producer, api, note_type):
    server = api_server(NOTIFIER_INBOX_STREAM_SECONDS=4)
    streams = []
    page.on("request", lambda request: streams.append(request) if "/stream?" in request.url else None)
    open_shop(page, host_pages, server, token_of(server, producer, "u_d"))
    page.get_by_role("button", name="Notifications").click()
    wait_for_stream("u_d")
    send(api, "u_d", "Before the reconnect")
    items(page).filter(has_text="Before the reconnect").wait_for()
    client = redis.Redis.from_url(settings.REDIS_URL)

    # The server ends the stream after 4 s; the browser waits the stream's retry (2 s) and reconnects.
    # What is sent in between reaches no stream: only the replay from Last-Event-ID can bring it.
    wait_until_true(lambda: client.pubsub_numsub(inbox_channel("u_d"))[0][1] == 0, timeout=10)
    send(api, "u_d", "While reconnecting")

    items(page).filter(has_text="While reconnecting").wait_for(timeout=8000)
    first_id = str(InboxItem.objects.get(title="Before the reconnect").id)
    assert [request.all_headers().get("last-event-id") for request in streams[:2]] == [None, first_id]
    assert items(page).locator(".title").all_inner_texts() == ["While reconnecting", "Before the reconnect"]
    badge(page).filter(has_text="2").wait_for()


def test_a_token_for_one_user_never_shows_another_users_items(page, api_server, host_pages, producer, api, note_type):
    server = api_server()
    send(api, "u_a", "For A only")
    send(api, "u_b", "For B only")
    token_a = token_of(server, producer, "u_a")
    open_shop(page, host_pages, server, token_a)
    page.get_by_role("button", name="Notifications, 1 unread").click()
    wait_for_stream("u_a")

    send(api, "u_b", "Also for B")
    send(api, "u_a", "Also for A")

    items(page).filter(has_text="Also for A").wait_for()
    assert sorted(items(page).locator(".title").all_inner_texts()) == ["Also for A", "For A only"]
    # A's token with B's user id: the API answers 404, and nothing of B's is shown.
    page.goto("about:blank")
    open_shop(page, host_pages, server, token_a, user_id="u_b")
    page.get_by_role("button", name="Notifications").click()
    page.locator("notifier-inbox .error").wait_for()
    assert items(page).count() == 0
    assert "For B" not in page.locator("notifier-inbox").evaluate("e => e.shadowRoot.textContent")


def test_the_demo_page_of_make_run_shows_a_notification_live_from_the_stream_server(page, api_server, producer,
                                                                                    note_type):
    server = api_server(NOTIFIER_DEMO_PAGES=1, NOTIFIER_DEMO_USER_ID="u_demo")
    streams = []
    page.on("request", lambda request: streams.append(request.url) if "/stream?" in request.url else None)
    page.goto(server.url + "/demo/inbox")
    page.get_by_role("button", name="Notifications").click()
    wait_for_stream("u_demo")

    sent_at = time.monotonic()
    response = requests.post(f"{server.url}/api/v1/notifications", timeout=5,
                             headers={"Authorization": f"Bearer {producer.key}"},
                             json={"type": "note", "user_id": "u_demo", "data": {"title": "Hello from make run"}})
    route_due("high")
    deliver_due("in_app", "high")
    items(page).filter(has_text="Hello from make run").wait_for(timeout=5000)
    arrived_after = time.monotonic() - sent_at

    assert response.status_code == 202
    assert arrived_after < 1.0, f"took {arrived_after:.3f} s"
    # The page is the API's (the API server's port), its stream the stream server's: CORS let it through.
    assert streams and all(url.startswith(server.stream_url + "/api/v1/users/u_demo/notifications/stream?")
                           for url in streams)
    badge(page).filter(has_text="1").wait_for(timeout=2000)
