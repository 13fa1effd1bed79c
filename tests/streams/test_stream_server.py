"""The stream server (notifier/streams), a real uvicorn process on the test database and Redis: a stream sees
what is published after it opened within a second, is replayed what it missed, ends after its lifetime with
heartbeats meanwhile, and answers every refusal as the API's InboxStreamView does (the same functions
decide); a thousand streams share one Redis connection, each gets its own events, and ingest on the API server
stays quick while they are open; a Redis that dies or hangs ends the open streams within their deadline,
refuses new ones with a 503, and the server serves again once Redis is back."""
import asyncio
import statistics
import time

import orjson
import psycopg
import pytest
import redis
import requests
from django.conf import settings
from django.db import connection

from bench.sse_client import SseStream, open_files_raised
from notifier.api.auth import recipient_token_issue
from notifier.inbox import inbox_channel, sse_frame
from notifier.models import InboxItem, Recipient
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from notifier.streams.hub import CLIENT_NAME
from tests.conftest import make_producer
from tests.e2e.test_inbox_stream_e2e import SERVER_ARGS, StreamReader

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST = {"NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS": 0.5}
# The API's server as the Procfile ships it (2 workers × 16 threads), for ingest beside the streams.
PROCFILE_API = ("--workers", "2", "--blocking-threads", "16", "--workers-kill-timeout", "3")


def stream_path(user_id: str, token: str | None = None) -> str:
    return f"/api/v1/users/{user_id}/notifications/stream" + (f"?token={token}" if token else "")


def open_stream(server, user_id, token, **headers):
    return requests.get(server.url + stream_path(user_id), params={"token": token}, stream=True, timeout=10,
                        headers={"Accept": "text/event-stream", **headers})


def send_in_app(api, user_id: str, order_id: str) -> None:
    response = api.post("/api/v1/notifications", {"type": "order_shipped", "user_id": user_id,
                                                  "data": {"order_id": order_id}, "channels": ["in_app"]},
                        format="json")
    assert response.status_code == 202
    route_due("high")


def test_an_open_stream_sees_an_item_delivered_after_it_opened_within_a_second(api, order_type, start_streams):
    server = start_streams(**FAST)
    token = api.post("/api/v1/users/u_7/token").json()["token"]
    stream = open_stream(server, "u_7", token)
    reader = StreamReader(stream)
    first_badge = reader.wait_for("unread_count")
    send_in_app(api, "u_7", "9")
    seen = len(reader.events)

    delivered_at = time.monotonic()
    deliver_due("in_app", "high")

    arrived_at, _, data, event_id = reader.wait_for("notification", after=seen)
    _, _, badge, _ = reader.wait_for("unread_count", after=seen)
    stream.close()
    assert stream.status_code == 200
    assert stream.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["Cache-Control"] == "no-cache" and stream.headers["X-Accel-Buffering"] == "no"
    assert arrived_at - delivered_at < 1.0, f"took {arrived_at - delivered_at:.3f} s"
    assert '"title":"Order shipped"' in data and '"body":"Order 9 ships."' in data
    assert event_id == str(InboxItem.objects.get().id)
    assert first_badge[2] == '{"unread_count":0,"unread_count_capped":false}'
    assert badge == '{"unread_count":1,"unread_count_capped":false}'


def test_a_reconnecting_stream_is_replayed_what_it_missed(api, order_type, start_streams):
    server = start_streams(**FAST)
    token = api.post("/api/v1/users/u_8/token").json()["token"]
    for order_id in ("1", "2", "3"):
        send_in_app(api, "u_8", order_id)
    deliver_due("in_app", "high")
    first_id = InboxItem.objects.order_by("id").first().id

    stream = open_stream(server, "u_8", token, **{"Last-Event-ID": str(first_id)})
    reader = StreamReader(stream)
    reader.wait_for("unread_count")
    stream.close()

    replayed = [(e[2], e[3]) for e in reader.events if e[1] == "notification"]
    later = list(InboxItem.objects.filter(id__gt=first_id).order_by("id").values_list("id", flat=True))
    assert [event_id for _, event_id in replayed] == [str(i) for i in later]
    assert '"body":"Order 2 ships."' in replayed[0][0] and '"body":"Order 3 ships."' in replayed[1][0]


def test_the_stream_ends_after_its_lifetime_with_heartbeats_meanwhile(api, start_streams):
    server = start_streams(NOTIFIER_INBOX_STREAM_SECONDS=2, NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS=0.5)
    token = api.post("/api/v1/users/u_9/token").json()["token"]

    started = time.monotonic()
    body = requests.get(server.url + stream_path("u_9"), params={"token": token}, timeout=10).text

    assert 1.5 < time.monotonic() - started < 6
    assert body.startswith("retry: 2000\n\n")
    assert body.count(": keepalive\n\n") >= 2
    assert 'event: unread_count\ndata: {"unread_count":0,"unread_count_capped":false}' in body
    assert redis.Redis.from_url(settings.REDIS_URL).pubsub_numsub(inbox_channel("u_9"))[0][1] == 0
    # The access log names the request without its query: the recipient token stays out of the logs.
    assert '"GET /api/v1/users/u_9/notifications/stream" 200' in server.output()
    assert token not in server.output()


def _refusals(producer_key: str, alice_token: str, reader_key: str) -> dict:
    """name → (user id, query, headers) of requests the stream refuses."""
    return {
        "no credentials": ("alice", {}, {}),
        "a token that is not one": ("alice", {"token": "rt_nonsense"}, {}),
        "a producer key in the URL": ("alice", {"token": producer_key}, {}),
        "an unknown producer key": ("alice", {}, {"Authorization": "Bearer nk_unknown"}),
        "another scheme": ("alice", {}, {"Authorization": "Basic YWxpY2U6cHc="}),
        "a bad header beside a good token": ("alice", {"token": alice_token}, {"Authorization": "Bearer nk_x"}),
        "a key without inbox:read": ("alice", {}, {"Authorization": f"Bearer {reader_key}"}),
        "another user's token": ("bob", {"token": alice_token}, {}),
        "a user notifier does not know": ("nobody", {}, {"Authorization": f"Bearer {producer_key}"}),
        "a user id that cannot be one": ("al ice", {"token": alice_token}, {}),
        "a NUL in the query": ("alice", {"token": alice_token, "x": "\x00"}, {}),
    }


def test_every_refusal_is_the_json_answer_the_api_gives(api, producer, start_api, start_streams):
    Recipient.objects.create(user_id="alice")
    _, reader_key = make_producer("reader", scopes=["users:read"])
    alice = api.post("/api/v1/users/alice/token").json()["token"]
    streams = start_streams()
    api_server = start_api(server_args=SERVER_ARGS, NOTIFIER_INBOX_STREAM_SECONDS=0)

    answers = {}
    for name, (user_id, query, headers) in _refusals(producer.key, alice, reader_key).items():
        ours = requests.get(streams.url + stream_path(user_id), params=query, headers=headers, timeout=10)
        theirs = requests.get(api_server.url + stream_path(user_id), params=query, headers=headers, timeout=10)
        answers[name] = (ours.status_code, ours.headers["Content-Type"], ours.json(),
                         ours.headers.get("WWW-Authenticate"))
        assert (ours.status_code, ours.json(), ours.headers.get("WWW-Authenticate")) == (
            theirs.status_code, theirs.json(), theirs.headers.get("WWW-Authenticate")), name

    assert {name: status for name, (status, *_) in answers.items()} == {
        "no credentials": 401, "a token that is not one": 401, "a producer key in the URL": 401,
        "an unknown producer key": 401, "another scheme": 401, "a bad header beside a good token": 401,
        "a key without inbox:read": 403, "another user's token": 404, "a user notifier does not know": 404,
        "a user id that cannot be one": 400, "a NUL in the query": 400,
    }
    assert {content_type for _, content_type, _, _ in answers.values()} == {"application/json"}
    assert answers["no credentials"][2] == {"error": {"code": "not_authenticated",
                                                      "message": "Authentication credentials were not provided."}}
    assert answers["no credentials"][3] == 'Bearer realm="notifier"'
    assert answers["a key without inbox:read"][2]["error"]["message"] == "This producer key lacks the 'inbox:read' scope."
    assert answers["a NUL in the query"][2]["error"]["fields"] == {"x": ["Must not contain a NUL character."]}


def test_a_producer_key_with_inbox_read_and_the_header_token_open_the_stream(api, producer, start_streams):
    Recipient.objects.create(user_id="alice")
    alice = api.post("/api/v1/users/alice/token").json()["token"]
    server = start_streams(NOTIFIER_INBOX_STREAM_SECONDS=0)

    by_key = requests.get(server.url + stream_path("alice"), headers={"Authorization": f"Bearer {producer.key}"},
                          timeout=10)
    by_header = requests.get(server.url + stream_path("alice"), headers={"Authorization": f"Bearer {alice}"},
                             timeout=10)

    for response in (by_key, by_header):
        assert response.status_code == 200
        assert response.text == ('retry: 2000\n\nevent: unread_count\n'
                                 'data: {"unread_count":0,"unread_count_capped":false}\n\n')


def test_other_paths_and_methods_are_not_served_here(start_streams, db):
    server = start_streams()

    unknown = requests.get(server.url + "/api/v1/notifications", timeout=5)
    post = requests.post(server.url + stream_path("alice"), timeout=5)
    health = requests.get(server.url + "/healthz", timeout=5)

    assert unknown.status_code == 404
    assert unknown.json() == {"error": {"code": "not_found", "message": "No endpoint at /api/v1/notifications."}}
    assert post.status_code == 405 and post.json()["error"]["code"] == "method_not_allowed"
    assert health.status_code == 200 and health.json()["open_streams"] == 0


def test_cors_for_the_inbox_origins_as_on_the_api(api, start_api, start_streams):
    shop = "https://shop.example.com"
    alice = api.post("/api/v1/users/alice/token").json()["token"]
    streams = start_streams(NOTIFIER_INBOX_ALLOWED_ORIGINS=shop, NOTIFIER_INBOX_STREAM_SECONDS=0)
    api_server = start_api(server_args=SERVER_ARGS, NOTIFIER_INBOX_ALLOWED_ORIGINS=shop)
    preflight = {"Origin": shop, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "last-event-id"}
    cors = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
            "Access-Control-Max-Age")

    ours = requests.options(streams.url + stream_path("alice"), headers=preflight, timeout=5)
    theirs = requests.options(api_server.url + stream_path("alice"), headers=preflight, timeout=5)
    allowed = requests.get(streams.url + stream_path("alice", alice), headers={"Origin": shop}, timeout=5)
    refused = requests.get(streams.url + stream_path("alice"), headers={"Origin": shop}, timeout=5)
    other = requests.get(streams.url + stream_path("alice", alice), headers={"Origin": "https://evil.example"},
                         timeout=5)

    assert ours.status_code == theirs.status_code == 204
    assert {name: ours.headers.get(name) for name in cors} == {name: theirs.headers.get(name) for name in cors}
    assert "Origin" in ours.headers["Vary"]
    assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == shop
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == shop
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers


# --- many streams ------------------------------------------------------------------------------------------

def _users_with_tokens(count: int, prefix: str) -> list[tuple[str, str]]:
    Recipient.objects.bulk_create([Recipient(user_id=f"{prefix}{i}") for i in range(count)])
    ids = dict(Recipient.objects.filter(user_id__startswith=prefix).values_list("user_id", "id"))
    return [(user_id, recipient_token_issue(user_id, ids[user_id])) for user_id in sorted(ids)]


async def _open_all(server, users) -> list[SseStream]:
    # A hundred at a time: the listen backlog and this process's connects stay well within their limits.
    streams = []
    for start in range(0, len(users), 100):
        streams += await asyncio.gather(*[SseStream.open(server.url, stream_path(user_id, token))
                                          for user_id, token in users[start:start + 100]])
    await asyncio.gather(*[stream.wait_for("unread_count") for stream in streams])
    return streams


def _hub_connections(client) -> list[dict]:
    return [c for c in client.client_list() if c.get("name") == CLIENT_NAME]


def test_a_thousand_streams_share_one_redis_connection_and_each_gets_its_own_item(start_streams):
    open_files_raised(4096)
    users = _users_with_tokens(1000, "many-")
    server = start_streams(NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS=30)
    client = redis.Redis.from_url(settings.REDIS_URL)

    async def scenario():
        streams = await _open_all(server, users)
        connections = _hub_connections(client)
        subscribers = dict(client.pubsub_numsub(*[inbox_channel(user_id) for user_id, _ in users]))
        published_at = time.monotonic()
        pipe = client.pipeline(transaction=False)
        for index, (user_id, _) in enumerate(users):
            pipe.publish(inbox_channel(user_id), sse_frame("notification", {"for": user_id}, index + 1))
        pipe.execute()
        events = await asyncio.gather(*[stream.wait_for("notification", timeout=10) for stream in streams])
        badges = await asyncio.gather(*[stream.wait_for("unread_count", timeout=10) for stream in streams])
        health = requests.get(server.url + "/healthz", timeout=5).json()
        for stream in streams:
            stream.close()
        return connections, subscribers, published_at, events, badges, health

    connections, subscribers, published_at, events, badges, health = asyncio.run(scenario())

    assert len(connections) == 1, connections
    assert int(connections[0]["sub"]) == 1000
    assert set(subscribers.values()) == {1}
    assert health["open_streams"] == 1000 and health["channels"] == 1000
    assert [orjson.loads(event.data)["for"] for event in events] == [user_id for user_id, _ in users]
    assert [event.id for event in events] == [str(index + 1) for index in range(1000)]
    assert {badge.data for badge in badges} == {'{"unread_count":0,"unread_count_capped":false}'}
    slowest = max(event.arrived_at for event in events) - published_at
    assert slowest < 1.0, f"the last of 1,000 items arrived after {slowest:.3f} s"
    # Closed streams unsubscribe: the last one of a channel takes the channel with it.
    deadline = time.monotonic() + 10
    while client.pubsub_numsub(inbox_channel(users[-1][0]))[0][1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert requests.get(server.url + "/healthz", timeout=5).json()["channels"] == 0


def test_two_streams_of_one_user_share_its_subscription_and_both_get_the_item(api, start_streams):
    server = start_streams(NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS=30)
    token = api.post("/api/v1/users/u_two/token").json()["token"]
    client = redis.Redis.from_url(settings.REDIS_URL)

    async def scenario():
        tabs = [await SseStream.open(server.url, stream_path("u_two", token)) for _ in range(2)]
        await asyncio.gather(*[tab.wait_for("unread_count") for tab in tabs])
        subscribers = client.pubsub_numsub(inbox_channel("u_two"))[0][1]
        client.publish(inbox_channel("u_two"), sse_frame("notification", {"n": 1}, 7))
        events = await asyncio.gather(*[tab.wait_for("notification") for tab in tabs])
        tabs[0].close()
        await asyncio.sleep(0.3)
        still = client.pubsub_numsub(inbox_channel("u_two"))[0][1]
        client.publish(inbox_channel("u_two"), sse_frame("notification", {"n": 2}, 8))
        second = await tabs[1].wait_for("notification")
        tabs[1].close()
        return subscribers, events, still, second

    subscribers, events, still, second = asyncio.run(scenario())

    assert subscribers == 1 and still == 1
    assert [event.id for event in events] == ["7", "7"] and second.id == "8"


def test_ingest_answers_quickly_while_a_thousand_streams_are_open(producer, order_type, start_api, start_streams):
    open_files_raised(4096)
    users = _users_with_tokens(1000, "open-")
    streams_server = start_streams(NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS=5)
    api_server = start_api(server_args=PROCFILE_API)

    def ingest(count: int) -> list[tuple[int, float]]:
        session = requests.Session()
        answers = []
        for n in range(count):
            started = time.monotonic()
            response = session.post(f"{api_server.url}/api/v1/notifications", timeout=10,
                                    headers={"Authorization": f"Bearer {producer.key}"},
                                    json={"type": "order_shipped", "user_id": f"open-{n % 1000}",
                                          "data": {"order_id": str(n)}, "channels": ["in_app"]})
            answers.append((response.status_code, time.monotonic() - started))
        return answers

    async def scenario():
        streams = await _open_all(streams_server, users)
        answers = await asyncio.to_thread(ingest, 200)
        still_open = sum(not stream.ended for stream in streams)
        for stream in streams:
            stream.close()
        return answers, still_open

    before = ingest(50)
    answers, still_open = asyncio.run(scenario())

    latencies = sorted(seconds for _, seconds in answers)
    assert {status for status, _ in answers} == {202}
    assert still_open == 1000
    p95 = latencies[int(len(latencies) * 0.95)]
    baseline = statistics.median(sorted(seconds for _, seconds in before))
    assert p95 < 0.25, f"p95 {p95 * 1000:.0f} ms with 1,000 streams open (median {baseline * 1000:.0f} ms before)"


# --- outages -------------------------------------------------------------------------------------------------

OUTAGE = {"NOTIFIER_STREAM_REDIS_PING_SECONDS": 0.5, "NOTIFIER_REDIS_TIMEOUT_SECONDS": 1,
          "NOTIFIER_REDIS_BREAKER_SECONDS": 1, "NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS": 30}


async def _ends_within(stream: SseStream, seconds: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while await stream.next_event() is not None:
            pass
    return time.monotonic() - started


@pytest.mark.parametrize("outage", ["killed", "hung"])
def test_a_redis_outage_ends_open_streams_in_time_refuses_new_ones_and_passes(api, own_redis, start_streams, outage):
    server = start_streams(REDIS_URL=own_redis.url, **OUTAGE)
    token = api.post("/api/v1/users/u_out/token").json()["token"]
    client = redis.Redis.from_url(own_redis.url, socket_timeout=2)

    async def scenario():
        stream = await SseStream.open(server.url, stream_path("u_out", token))
        await stream.wait_for("unread_count")
        own_redis.kill() if outage == "killed" else own_redis.hang()
        # Silent for the ping interval plus the Redis timeout at most, then the stream ends cleanly.
        ended_after = await _ends_within(stream, 5)
        started = time.monotonic()
        refused = await SseStream.open(server.url, stream_path("u_out", token))
        refused_body = orjson.loads(await refused.body())
        refused_after = time.monotonic() - started
        own_redis.restart() if outage == "killed" else own_redis.resume()
        await asyncio.sleep(1.2)  # the breaker's window
        again = await SseStream.open(server.url, stream_path("u_out", token))
        await again.wait_for("unread_count")
        client.publish(inbox_channel("u_out"), sse_frame("notification", {"back": True}, 1))
        back = await again.wait_for("notification", timeout=5)
        again.close()
        return stream, ended_after, refused, refused_body, refused_after, back

    stream, ended_after, refused, refused_body, refused_after, back = asyncio.run(scenario())

    assert ended_after < 4, f"the open stream ended {ended_after:.1f} s after Redis went away"
    assert stream.ended
    assert refused.status == 503 and refused.headers["retry-after"] == "5"
    assert refused_body["error"]["code"] == "unavailable"
    assert refused_after < 2.5, f"a new stream waited {refused_after:.1f} s to be refused"
    assert back.data == '{"back":true}'
    assert requests.get(server.url + "/healthz", timeout=5).json()["redis"] == "connected"


def test_waiting_streams_hold_no_more_database_connections_than_the_server_has_threads(start_streams):
    users = _users_with_tokens(50, "db-")
    database = connection.settings_dict
    url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    # Kept connections as in production (DB_CONN_MAX_AGE 60), named so that PostgreSQL shows whose they are.
    server = start_streams(DATABASE_URL=url + "?application_name=notifier-streams-test", DB_CONN_MAX_AGE=60,
                           NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS=30)

    async def scenario():
        streams = await _open_all(server, users)
        with psycopg.connect(url.replace(f"/{database['NAME']}", "/postgres")) as admin:
            held = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                 ["notifier-streams-test"]).fetchone()[0]
        for stream in streams:
            stream.close()
        return held

    held = asyncio.run(scenario())

    assert 1 <= held <= settings.NOTIFIER_STREAM_DATABASE_THREADS
