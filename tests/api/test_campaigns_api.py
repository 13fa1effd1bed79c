"""POST /api/v1/campaigns (202, or 200 for a dry run), GET the list and one campaign with its counters, and
pause / resume / cancel, each refused with a 409 naming the status when that status does not allow it."""
import hashlib
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from notifier.campaigns import dry_run, fanout
from notifier.campaigns import service
from notifier.campaigns.service import IDEMPOTENCY_NAMESPACE
from notifier.models import (
    Campaign, CampaignChunk, CampaignMember, CampaignStatus, Delivery, Notification, Recipient,
)
from tests.conftest import make_producer

pytestmark = pytest.mark.django_db

BODY = {"name": "Winter sale", "type": "order_shipped", "data": {"order_id": "W1"},
        "segment": {"user_ids": ["u_1", "u_2", "u_unknown"]}}


def client_for(name, scopes=("campaigns",)):
    producer, key = make_producer(name, scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.producer = producer
    return client


@pytest.fixture
def marketer(db):
    return client_for("marketing")


@pytest.fixture
def users(db):
    return [Recipient.objects.create(user_id=f"u_{n}", email=f"u_{n}@example.com") for n in (1, 2)]


@pytest.fixture
def started(monkeypatch):
    """What fanout.campaign_start and campaign_kick were called with (the lead's fan-out is not on this branch)."""
    calls = {"start": [], "kick": []}
    monkeypatch.setattr(fanout, "campaign_start", lambda campaign: calls["start"].append(campaign.id))
    monkeypatch.setattr(fanout, "campaign_kick", lambda campaign_id: calls["kick"].append(campaign_id))
    return calls


def create(client, body=BODY, **headers):
    return client.post("/api/v1/campaigns", body, format="json", **headers)


def make_campaign(producer, order_type, status=CampaignStatus.RUNNING, **fields):
    return Campaign.objects.create(producer=producer, name=fields.pop("name", "c"), type=order_type,
                                   segment={"all": True}, status=status, **fields)


class TestCreate:
    def test_it_answers_202_with_the_id_status_and_estimate_and_starts_after_commit(
            self, marketer, order_type, users, started, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            response = create(marketer)

        assert response.status_code == 202, response.content
        body = response.json()
        assert set(body) == {"id", "status", "estimated_recipients"}
        assert body["estimated_recipients"] == 2  # u_unknown is no recipient
        campaign = Campaign.objects.get()
        assert str(campaign.id) == body["id"] and campaign.producer == marketer.producer
        assert campaign.segment == {"user_ids": 3}  # the ids are member rows, not a copy in every read
        assert set(CampaignMember.objects.values_list("recipient__user_id", flat=True)) == {"u_1", "u_2"}
        assert started["start"] == [campaign.id]

    def test_it_stores_every_field_it_was_given(self, marketer, order_type, users, started):
        response = create(marketer, {**BODY, "channels": ["email", "in_app"], "segment": {"topic": "sports"},
                                     "send_window": {"local_time": "09:30"}, "throttle": {"max_per_second": 50}})

        assert response.status_code == 202, response.content
        campaign = Campaign.objects.get()
        assert campaign.channels == ["email", "in_app"]
        assert campaign.segment == {"topic": "sports"}
        assert campaign.send_window == {"local_time": "09:30", "timezone_fallback": "UTC"}
        assert campaign.throttle_per_second == 50

    def test_a_schedule_at_in_the_future_waits_as_scheduled_and_is_not_started(
            self, marketer, order_type, users, started, django_capture_on_commit_callbacks):
        later = timezone.now() + timedelta(hours=3)

        with django_capture_on_commit_callbacks(execute=True):
            response = create(marketer, {**BODY, "schedule_at": later.isoformat()})

        assert response.json()["status"] == "scheduled"
        assert Campaign.objects.get().schedule_at == later
        assert started["start"] == []

    def test_a_key_without_the_campaigns_scope_is_refused(self, api, order_type):
        response = create(api)

        assert response.status_code == 403
        assert response.json()["error"]["message"] == "This producer key lacks the 'campaigns' scope."


# Each bad body, and the field path its 400 names.
INVALID = [
    ({"name": None}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"type": "no_such_type"}, "type"),
    ({"data": {}}, "data.order_id"),  # required by the type
    ({"data": [1]}, "data"),
    ({"channels": ["fax"]}, "channels[0]"),
    ({"channels": ["email", "email"]}, "channels"),
    ({"channels": []}, "channels"),
    ({"segment": None}, "segment"),
    ({"segment": {"user_ids": ["u_1"], "all": True}}, "segment"),
    ({"segment": {"user_ids": ["u_1", "bad id"]}}, "segment.user_ids[1]"),
    ({"segment": {"user_ids": []}}, "segment.user_ids"),
    ({"segment": {"all": False}}, "segment.all"),
    ({"schedule_at": "tomorrow"}, "schedule_at"),
    ({"send_window": {"local_time": "09:00", "spread_seconds": 60}}, "send_window.local_time"),
    ({"send_window": {}}, "send_window.local_time"),
    ({"send_window": {"local_time": "25:00"}}, "send_window.local_time"),
    ({"send_window": {"local_time": "9:00"}}, "send_window.local_time"),
    ({"send_window": {"local_time": "09:00", "timezone_fallback": "Mars/Olympus"}}, "send_window.timezone_fallback"),
    ({"send_window": {"spread_seconds": 60, "timezone_fallback": "UTC"}}, "send_window.timezone_fallback"),
    ({"send_window": {"spread_seconds": 0}}, "send_window.spread_seconds"),
    ({"send_window": {"spread_seconds": 7 * 24 * 3600 + 1}}, "send_window.spread_seconds"),
    ({"send_window": {"spread_seconds": "600"}}, "send_window.spread_seconds"),
    ({"send_window": {"spread_seconds": 60, "every": 2}}, "send_window.every"),
    ({"send_window": "09:00"}, "send_window"),
    ({"throttle": {"max_per_second": 0}}, "throttle.max_per_second"),
    ({"throttle": {"max_per_second": 100_001}}, "throttle.max_per_second"),
    ({"throttle": {"max_per_second": 5.5}}, "throttle.max_per_second"),
    ({"throttle": {"max_per_second": True}}, "throttle.max_per_second"),
    ({"throttle": {}}, "throttle.max_per_second"),
    ({"throttle": 1000}, "throttle"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"dry_run": "yes"}, "dry_run"),
    ({"priority": "high"}, "priority"),
]


@pytest.mark.parametrize("change, field", INVALID, ids=[f"{field}={change}"[:60] for change, field in INVALID])
def test_a_bad_field_is_a_400_naming_it_and_stores_nothing(marketer, order_type, users, change, field):
    body = {name: value for name, value in {**BODY, **change}.items() if value is not None}

    response = create(marketer, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert error["message"].startswith(f"{next(iter(error['fields']))}: ")
    assert not Campaign.objects.exists()


def test_every_bad_field_is_named_at_once(marketer, order_type):
    response = create(marketer, {"type": "order_shipped", "segment": {"all": 1}, "throttle": {"max_per_second": 0}})

    assert set(response.json()["error"]["fields"]) == {"name", "segment.all", "throttle.max_per_second", "data.order_id"}


def test_data_larger_than_a_notification_may_carry_is_refused(marketer, order_type, settings):
    settings.NOTIFIER_MAX_DATA_BYTES = 100

    response = create(marketer, {**BODY, "data": {"order_id": "x" * 200}})

    assert list(response.json()["error"]["fields"]) == ["data"]


class TestRequestSize:
    def test_the_campaigns_endpoint_reads_bodies_larger_than_a_notifications(self, marketer, order_type, users,
                                                                            settings, started):
        settings.NOTIFIER_MAX_REQUEST_BYTES = 2000
        body = {**BODY, "segment": {"user_ids": [f"u_{n}" for n in range(1000)]}}  # about 8 KB

        assert create(marketer, body).status_code == 202
        assert marketer.post("/api/v1/notifications", body, format="json").status_code == 413

    def test_over_its_own_limit_it_is_a_413(self, marketer, order_type, settings):
        settings.NOTIFIER_CAMPAIGN_MAX_REQUEST_BYTES = 2000

        response = create(marketer, {**BODY, "segment": {"user_ids": [f"u_{n}" for n in range(1000)]}})

        assert response.status_code == 413
        assert response.json()["error"] == {"code": "request_too_large",
                                            "message": "The request body is larger than 2000 bytes."}
        assert not Campaign.objects.exists()

    def test_100000_user_ids_fit_the_default_limit(self, marketer, order_type, monkeypatch):
        monkeypatch.setattr(dry_run, "campaign_dry_run", lambda campaign, user_ids=None: {
            "targeted": len(user_ids), "eligible": {}, "suppressed": {}})
        body = {**BODY, "dry_run": True, "segment": {"user_ids": [f"user-{n:07d}" for n in range(100_000)]}}

        response = create(marketer, body)

        assert response.status_code == 200, response.content[:500]
        assert response.json()["targeted"] == 100_000


class TestIdempotency:
    def test_the_same_key_and_body_answer_the_same_campaign(self, marketer, order_type, users, started):
        first = create(marketer, {**BODY, "idempotency_key": "sale-1"})
        again = create(marketer, BODY, HTTP_IDEMPOTENCY_KEY="sale-1")  # the header is the same key

        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"]
        assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
        assert Campaign.objects.count() == 1 and CampaignMember.objects.count() == 2

    def test_the_same_key_with_another_body_is_a_422_as_for_notifications(self, marketer, order_type, users, started):
        create(marketer, {**BODY, "idempotency_key": "sale-1"})

        response = create(marketer, {**BODY, "name": "Another sale", "idempotency_key": "sale-1"})

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"
        assert Campaign.objects.count() == 1

    def test_another_producer_may_use_the_same_key(self, marketer, order_type, users, started):
        create(marketer, {**BODY, "idempotency_key": "sale-1"})

        response = create(client_for("other"), {**BODY, "idempotency_key": "sale-1"})

        assert response.status_code == 202
        assert Campaign.objects.count() == 2

    def test_a_key_and_header_that_differ_are_a_400(self, marketer, order_type):
        response = create(marketer, {**BODY, "idempotency_key": "a"}, HTTP_IDEMPOTENCY_KEY="b")

        assert list(response.json()["error"]["fields"]) == ["idempotency_key"]

    def test_a_key_still_in_flight_is_a_409_at_once(self, marketer, order_type, users):
        # Another session holds the key's lock, as the first request's open transaction would.
        digest = hashlib.sha256(f"{IDEMPOTENCY_NAMESPACE}:{marketer.producer.pk}:sale-1".encode()).digest()
        params = connection.get_connection_params()
        with psycopg.connect(**{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")},
                             autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)])

            response = create(marketer, {**BODY, "idempotency_key": "sale-1"})

        assert response.status_code == 409
        assert response.json()["error"]["code"] == "idempotency_key_in_flight"
        assert not Campaign.objects.exists()


class TestDryRun:
    def test_it_answers_200_with_the_estimate_and_stores_nothing(self, marketer, order_type, users, monkeypatch,
                                                                  started):
        seen = {}

        def estimate(campaign, user_ids=None):
            seen.update(saved=campaign.pk is not None and Campaign.objects.filter(pk=campaign.pk).exists(),
                        name=campaign.name, type=campaign.type.key, user_ids=user_ids)
            return {"targeted": 2, "eligible": {"email": 2}, "suppressed": {"no_target": 1}, "held": 0}

        monkeypatch.setattr(dry_run, "campaign_dry_run", estimate)

        response = create(marketer, {**BODY, "dry_run": True, "idempotency_key": "sale-1"})

        assert response.status_code == 200
        assert response.json() == {"targeted": 2, "eligible": {"email": 2}, "suppressed": {"no_target": 1}, "held": 0}
        assert seen == {"saved": False, "name": "Winter sale", "type": "order_shipped",
                        "user_ids": ["u_1", "u_2", "u_unknown"]}
        assert not Campaign.objects.exists() and not CampaignMember.objects.exists()
        assert started["start"] == []
        # The key was not taken: the real request may use it.
        assert create(marketer, {**BODY, "idempotency_key": "sale-1"}).status_code == 202

    def test_a_dry_run_is_validated_like_a_create(self, marketer, order_type):
        response = create(marketer, {**BODY, "dry_run": True, "segment": {"user_ids": "u_1"}})

        assert list(response.json()["error"]["fields"]) == ["segment.user_ids"]


class TestReading:
    def test_the_list_shows_only_this_producers_campaigns_newest_first_a_page_at_a_time(self, marketer, order_type):
        older = make_campaign(marketer.producer, order_type, name="older")
        newer = make_campaign(marketer.producer, order_type, name="newer", status=CampaignStatus.PAUSED)
        make_campaign(make_producer("other")[0], order_type, name="not mine")

        first = marketer.get("/api/v1/campaigns", {"limit": 1}).json()
        second = marketer.get("/api/v1/campaigns", {"limit": 1, "cursor": first["next_cursor"]}).json()

        assert [c["name"] for c in first["campaigns"]] == ["newer"]
        assert [c["name"] for c in second["campaigns"]] == ["older"] and second["next_cursor"] is None
        assert first["campaigns"][0]["id"] == str(newer.id) and second["campaigns"][0]["id"] == str(older.id)
        paused = marketer.get("/api/v1/campaigns", {"status": "paused"}).json()["campaigns"]
        assert [c["name"] for c in paused] == ["newer"]

    @pytest.mark.parametrize("cursor", ["nope", "WyJ4IiwieSJd", "WyIyMDI2LTEzLTQwVDAwOjAwOjAwWiIsIngiXQ"])
    def test_a_cursor_it_did_not_give_is_a_400_naming_it(self, marketer, cursor):
        response = marketer.get("/api/v1/campaigns", {"cursor": cursor})

        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == ["cursor"]

    def test_the_detail_shows_the_fields_and_counters(self, marketer, order_type, users):
        campaign = make_campaign(marketer.producer, order_type, estimated_recipients=4, chunks_created=2,
                                 throttle_per_second=10, send_window={"spread_seconds": 60})
        CampaignChunk.objects.create(campaign=campaign, number=1, after_recipient_id=0, last_recipient_id=10,
                                     due_at=timezone.now(), recipients=2, status=CampaignChunk.DONE,
                                     counts={"eligible": {"email": 2}, "suppressed": {}, "held": 1})
        CampaignChunk.objects.create(campaign=campaign, number=2, after_recipient_id=10, last_recipient_id=20,
                                     due_at=timezone.now(), recipients=1,
                                     counts={"eligible": {}, "suppressed": {"opted_out": 1}, "held": 0})
        for recipient, status in zip(users, ("clicked", "queued")):
            notification = Notification.objects.create(producer=marketer.producer, type=order_type, campaign=campaign,
                                                       recipient=recipient, priority="low", due_at=timezone.now())
            Delivery.objects.create(notification=notification, channel="email", priority="low", status=status,
                                    target=recipient.email, next_attempt_at=timezone.now())

        response = marketer.get(f"/api/v1/campaigns/{campaign.id}")

        assert response.status_code == 200
        body = response.json()
        assert body["throttle"] == {"max_per_second": 10} and body["send_window"] == {"spread_seconds": 60}
        assert body["type"] == "order_shipped" and body["status"] == "running"
        assert body["counters"] == {
            "targeted": 3, "eligible": {"email": 2}, "suppressed": {"opted_out": 1}, "held": 1,
            "sent": 1, "delivered": 1, "opened": 1, "clicked": 1, "failed": 0, "dead": 0, "cancelled": 0,
            "waiting": 1, "chunks": {"created": 2, "done": 1}, "percent_done": 37.5,  # 3/4 routed, 1/2 ended
        }

    @pytest.mark.parametrize("campaign_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000001"])
    def test_an_unknown_id_is_a_404(self, marketer, campaign_id):
        assert marketer.get(f"/api/v1/campaigns/{campaign_id}").status_code == 404
        assert marketer.post(f"/api/v1/campaigns/{campaign_id}/pause").status_code == 404

    def test_another_producers_campaign_is_a_404(self, marketer, order_type):
        campaign = make_campaign(make_producer("other")[0], order_type)

        assert marketer.get(f"/api/v1/campaigns/{campaign.id}").status_code == 404
        assert marketer.post(f"/api/v1/campaigns/{campaign.id}/cancel").status_code == 404
        assert Campaign.objects.get().status == CampaignStatus.RUNNING


@pytest.fixture
def published(monkeypatch):
    """The notifier.campaign_cancel_rest tasks published."""
    from notifier import tasks

    calls = []
    monkeypatch.setattr(tasks.campaign_cancel_rest, "apply_async", lambda args, **options: calls.append(list(args)))
    return calls


class TestMoves:
    def move(self, client, campaign, action):
        return client.post(f"/api/v1/campaigns/{campaign.id}/{action}")

    @pytest.mark.parametrize("status", [CampaignStatus.RUNNING, CampaignStatus.SCHEDULED])
    def test_pause_stops_a_running_or_scheduled_campaign(self, marketer, order_type, status):
        campaign = make_campaign(marketer.producer, order_type, status=status)

        response = self.move(marketer, campaign, "pause")

        assert response.status_code == 200
        assert response.json()["status"] == "paused" and response.json()["paused_at"]
        assert "counters" in response.json()
        campaign.refresh_from_db()
        assert campaign.status == CampaignStatus.PAUSED and campaign.paused_at is not None

    def test_resume_runs_it_again_and_kicks_the_fan_out_after_commit(self, marketer, order_type, started,
                                                                    django_capture_on_commit_callbacks):
        campaign = make_campaign(marketer.producer, order_type, status=CampaignStatus.PAUSED,
                                 started_at=timezone.now())

        with django_capture_on_commit_callbacks(execute=True):
            response = self.move(marketer, campaign, "resume")

        assert response.json()["status"] == "running"
        assert started["kick"] == [campaign.id]

    def test_resuming_a_campaign_paused_before_it_started_schedules_it_again(self, marketer, order_type, started,
                                                                           django_capture_on_commit_callbacks):
        later = timezone.now() + timedelta(hours=1)
        campaign = make_campaign(marketer.producer, order_type, status=CampaignStatus.PAUSED, schedule_at=later)

        with django_capture_on_commit_callbacks(execute=True):
            response = self.move(marketer, campaign, "resume")

        assert response.json()["status"] == "scheduled"
        assert started == {"start": [], "kick": []}  # it starts at schedule_at

    def test_resuming_one_paused_before_it_started_whose_time_has_come_starts_it(
            self, marketer, order_type, started, django_capture_on_commit_callbacks):
        campaign = make_campaign(marketer.producer, order_type, status=CampaignStatus.PAUSED,
                                 schedule_at=timezone.now() - timedelta(minutes=1))

        with django_capture_on_commit_callbacks(execute=True):
            response = self.move(marketer, campaign, "resume")

        assert response.json()["status"] == "scheduled"
        assert started == {"start": [campaign.id], "kick": []}

    @pytest.mark.parametrize("status", [CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED])
    def test_cancel_stops_it_and_publishes_the_cancel_of_what_waits(self, marketer, order_type, status, published,
                                                                   django_capture_on_commit_callbacks):
        campaign = make_campaign(marketer.producer, order_type, status=status)

        with django_capture_on_commit_callbacks(execute=True):
            response = self.move(marketer, campaign, "cancel")

        assert response.status_code == 200
        assert response.json()["status"] == "cancelled" and response.json()["cancelled_at"]
        assert published == [[str(campaign.id)]]

    REFUSED = [
        ("pause", CampaignStatus.PAUSED), ("pause", CampaignStatus.CANCELLED), ("pause", CampaignStatus.COMPLETED),
        ("resume", CampaignStatus.RUNNING), ("resume", CampaignStatus.SCHEDULED), ("resume", CampaignStatus.CANCELLED),
        ("cancel", CampaignStatus.CANCELLED), ("cancel", CampaignStatus.COMPLETED),
    ]

    @pytest.mark.parametrize("action, status", REFUSED)
    def test_a_move_its_status_does_not_allow_is_a_409_naming_the_status(self, marketer, order_type, action, status,
                                                                        published):
        campaign = make_campaign(marketer.producer, order_type, status=status)

        response = self.move(marketer, campaign, action)

        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "campaign_status_conflict"
        assert f"Campaign {campaign.id} is {status}: only a " in error["message"]
        campaign.refresh_from_db()
        assert campaign.status == status
        assert published == []


def test_the_service_moves_are_conditional_on_the_stored_status(order_type, producer):
    """A stale instance (another operator cancelled meanwhile) cannot pause it."""
    campaign = make_campaign(producer, order_type)
    Campaign.objects.filter(id=campaign.id).update(status=CampaignStatus.CANCELLED)

    with pytest.raises(service.CampaignMoveRefused, match="is cancelled"):
        service.campaign_pause(campaign)
