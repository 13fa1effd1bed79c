"""The live inbox, end to end: a browser-like client holds a Server-Sent Events stream open on a real
API server (granian, as the Procfile serves it) while a notification goes through the
pipeline; the new item and the new badge arrive within a second, without polling."""
import threading
import time

import pytest
import requests

from notifier.models import InboxItem
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SERVER_ARGS = ("--workers", "1", "--blocking-threads", "8", "--workers-kill-timeout", "3")
# Short heartbeats: a stream notices its client left at the next write, so the server stops promptly.
FAST = {"NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS": 0.5}


class StreamReader:
    """Reads SSE frames from a streaming response in a thread, stamping when each arrived."""

    def __init__(self, response):
        self.response = response
        self.events = []  # (arrived_at, event, data, id)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        fields = {}
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line == "":
                    if "event" in fields:
                        self.events.append((time.monotonic(), fields["event"], fields.get("data"), fields.get("id")))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
        except Exception:  # the test closed the stream under the reader
            pass

    def wait_for(self, event, after=0, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events[after:] if e[1] == event]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"no {event} event within {timeout} s; got {self.events}")


def test_an_open_inbox_sees_a_new_notification_within_a_second(api, order_type, start_api):
    server = start_api(server_args=SERVER_ARGS, **FAST)
    token = api.post("/api/v1/users/u_7/token").json()["token"]
    stream = requests.get(f"{server.url}/api/v1/users/u_7/notifications/stream", params={"token": token},
                          headers={"Accept": "text/event-stream"}, stream=True, timeout=10)
    assert stream.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    reader = StreamReader(stream)
    first_badge = reader.wait_for("unread_count")
    # A second request is served while the stream holds its thread.
    assert requests.get(f"{server.url}/api/v1/users/u_7/notifications/unread-count",
                        headers={"Authorization": f"Bearer {token}"}, timeout=5).json()["unread_count"] == 0

    api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_7", "data": {"order_id": "9"},
                                       "channels": ["in_app"]}, format="json")
    route_due("high")
    seen = len(reader.events)
    delivered_at = time.monotonic()
    deliver_due("in_app", "high")

    arrived_at, _, data, event_id = reader.wait_for("notification", after=seen)
    _, _, badge, _ = reader.wait_for("unread_count", after=seen)
    stream.close()
    assert arrived_at - delivered_at < 1.0
    assert '"title":"Order shipped"' in data and '"body":"Order 9 ships."' in data
    assert event_id.isdigit()
    assert first_badge[2] == '{"unread_count":0,"unread_count_capped":false}'
    assert badge == '{"unread_count":1,"unread_count_capped":false}'


def test_a_reconnecting_stream_replays_what_it_missed(api, order_type, start_api):
    server = start_api(server_args=SERVER_ARGS, **FAST)
    token = api.post("/api/v1/users/u_8/token").json()["token"]
    for order_id in ("1", "2"):
        api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": "u_8",
                                           "data": {"order_id": order_id}, "channels": ["in_app"]}, format="json")
    route_due("high")
    deliver_due("in_app", "high")
    first_id = InboxItem.objects.order_by("id").first().id

    stream = requests.get(f"{server.url}/api/v1/users/u_8/notifications/stream", params={"token": token},
                          headers={"Last-Event-ID": str(first_id)}, stream=True, timeout=10)
    reader = StreamReader(stream)
    reader.wait_for("unread_count")
    stream.close()

    replayed = [e for e in reader.events if e[1] == "notification"]
    assert len(replayed) == 1 and '"body":"Order 2 ships."' in replayed[0][2]


def test_the_stream_ends_after_its_lifetime_and_sends_heartbeats(api, start_api):
    server = start_api(server_args=SERVER_ARGS, NOTIFIER_INBOX_STREAM_SECONDS=2,
                       NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS=0.5)
    token = api.post("/api/v1/users/u_9/token").json()["token"]

    started = time.monotonic()
    body = requests.get(f"{server.url}/api/v1/users/u_9/notifications/stream", params={"token": token},
                        timeout=10).text

    assert 1.5 < time.monotonic() - started < 6
    assert body.count(": keepalive") >= 2
    assert body.startswith("retry: 2000")


def test_an_admin_publishes_three_languages_sends_a_test_and_the_user_reads_it_live(client, api, start_api):
    """The issue's definition of done, in one flow."""
    from django.contrib.auth.models import User
    from django.urls import reverse

    from notifier.models import NotificationType, Template

    User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.login(username="ops", password="pw")
    welcome = NotificationType.objects.create(key="welcome", default_channels=["in_app"], default_language="en",
                                              variables={"name": {"required": True, "example": "Ana"}})
    for language, body in (("en", "Welcome, {{ name }}!"), ("pt", "Olá, {{ name }}!"), ("de", "Willkommen, {{ name }}!")):
        response = client.post(reverse("admin:notifier_template_add"), {
            "type": welcome.pk, "channel": "in_app", "language": language, "title": "👋", "body": body})
        assert response.status_code == 302
    portuguese = Template.objects.get(language="pt")
    assert "Olá, Ana!" in client.get(reverse("admin:notifier_template_preview", args=[portuguese.pk])).content.decode()

    server = start_api(server_args=SERVER_ARGS, **FAST)
    api.put("/api/v1/users/u_pt", {"language": "pt-BR"}, format="json")
    token = api.post("/api/v1/users/u_pt/token").json()["token"]
    stream = requests.get(f"{server.url}/api/v1/users/u_pt/notifications/stream", params={"token": token},
                          stream=True, timeout=10)
    reader = StreamReader(stream)
    reader.wait_for("unread_count")
    seen = len(reader.events)

    client.post(reverse("admin:notifier_template_preview", args=[portuguese.pk]),
                {"data": '{"name": "Beatriz"}', "user_id": "u_pt", "send_test": "1"})
    route_due("high")
    deliver_due("in_app", "high")

    _, _, live, _ = reader.wait_for("notification", after=seen)
    _, _, badge, _ = reader.wait_for("unread_count", after=seen)
    stream.close()
    inbox = requests.get(f"{server.url}/api/v1/users/u_pt/notifications",
                         headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
    assert '"body":"Olá, Beatriz!"' in live  # pt-BR falls back to pt
    assert badge == '{"unread_count":1,"unread_count_capped":false}'
    assert [n["body"] for n in inbox["notifications"]] == ["Olá, Beatriz!"] and inbox["unread_count"] == 1


def test_with_real_workers_a_notification_reaches_the_open_inbox_within_a_second_of_being_accepted(
    api, producer, order_type, start_api, start_worker
):
    start_worker()
    server = start_api(server_args=SERVER_ARGS, **FAST)
    token = api.post("/api/v1/users/u_live/token").json()["token"]
    stream = requests.get(f"{server.url}/api/v1/users/u_live/notifications/stream", params={"token": token},
                          stream=True, timeout=10)
    reader = StreamReader(stream)
    reader.wait_for("unread_count")
    seen = len(reader.events)

    accepted_at = time.monotonic()
    response = requests.post(f"{server.url}/api/v1/notifications", timeout=5,
                             headers={"Authorization": f"Bearer {producer.key}"},
                             json={"type": "order_shipped", "user_id": "u_live", "data": {"order_id": "1"},
                                   "channels": ["in_app"]})
    arrived_at, _, data, _ = reader.wait_for("notification", after=seen)
    stream.close()

    assert response.status_code == 202
    assert response.json()["notifications"][0]["id"] in data
    assert arrived_at - accepted_at < 1.0, f"took {arrived_at - accepted_at:.3f} s"
