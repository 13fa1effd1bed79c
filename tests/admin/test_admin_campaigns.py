"""Campaigns in the admin: the list shows each one's progress (the page's in two queries), its page the
counters and chunks and no way to edit it, the actions and buttons pause / resume / cancel, and a campaign
is created only after a dry run of exactly what is created."""
import pytest
from django.urls import reverse
from django.utils import timezone

from notifier.campaigns import dry_run, fanout
from notifier.models import Campaign, CampaignChunk, CampaignMember, CampaignStatus, Recipient
from tests.conftest import make_producer

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:notifier_campaign_changelist")
ADD = reverse("admin:notifier_campaign_add")


def messages_of(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


def make_campaign(order_type, name="Winter sale", status=CampaignStatus.RUNNING, **fields):
    producer = make_producer(f"p-{name}")[0]
    return Campaign.objects.create(producer=producer, name=name, type=order_type, segment={"all": True},
                                   status=status, **fields)


@pytest.fixture(autouse=True)
def no_fan_out(monkeypatch):
    calls = []
    monkeypatch.setattr(fanout, "campaign_start", lambda campaign: calls.append(("start", campaign.id)))
    monkeypatch.setattr(fanout, "campaign_kick", lambda campaign_id: calls.append(("kick", campaign_id)))
    return calls


@pytest.fixture
def estimates(monkeypatch):
    """Each dry run the admin asked for, as (the unsaved campaign's name, its user ids)."""
    asked = []

    def estimate(campaign, user_ids=None):
        asked.append((campaign.name, campaign.pk is not None and Campaign.objects.filter(pk=campaign.pk).exists(),
                      user_ids))
        return {"targeted": len(user_ids or []), "eligible": {"email": 2}, "suppressed": {"opted_out": 1}, "held": 0}

    monkeypatch.setattr(dry_run, "campaign_dry_run", estimate)
    return asked


class TestList:
    def test_it_shows_each_campaigns_progress_in_two_queries_for_the_page(self, ops, order_type,
                                                                         django_assert_max_num_queries):
        for n in range(5):
            campaign = make_campaign(order_type, name=f"sale {n}", estimated_recipients=10)
        CampaignChunk.objects.create(campaign=campaign, number=1, after_recipient_id=0, last_recipient_id=5,
                                     due_at=timezone.now(), recipients=5, status=CampaignChunk.DONE)
        ops.get(CHANGELIST)  # warm the session and permission caches

        with django_assert_max_num_queries(12) as captured:
            page = ops.get(CHANGELIST).content.decode()

        assert "sale 4" in page and "sale 0" in page
        assert "50.0% · targeted 5 · sent 0" in page
        progress_queries = [q for q in captured.captured_queries if "notifier_campaignchunk" in q["sql"]
                            or "notifier_delivery" in q["sql"]]
        assert len(progress_queries) == 2

    @pytest.mark.parametrize("q", ["u_42", "Winter", "00000000-0000-0000-0000-000000000001"])
    def test_it_and_the_chunks_list_render_any_search(self, ops, order_type, q):
        make_campaign(order_type)

        assert ops.get(CHANGELIST, {"q": q}).status_code == 200
        assert ops.get(reverse("admin:notifier_campaignchunk_changelist"), {"q": q}).status_code == 200

    def test_it_filters_by_status(self, ops, order_type):
        make_campaign(order_type, name="running one")
        make_campaign(order_type, name="paused one", status=CampaignStatus.PAUSED)

        page = ops.get(CHANGELIST, {"status__exact": "paused"}).content.decode()

        assert ">paused one</a>" in page and ">running one</a>" not in page


class TestPage:
    def test_it_shows_the_counters_and_chunks_read_only(self, ops, order_type):
        campaign = make_campaign(order_type, chunks_created=1)
        CampaignChunk.objects.create(campaign=campaign, number=1, after_recipient_id=0, last_recipient_id=5,
                                     due_at=timezone.now(), recipients=5, counts={"eligible": {"push": 4},
                                                                                  "suppressed": {"no_target": 1}})

        page = ops.get(reverse("admin:notifier_campaign_change", args=[campaign.pk])).content.decode()

        assert "<th>eligible: push</th><td>4</td>" in page and "<th>suppressed: no_target</th><td>1</td>" in page
        assert "All 1 chunks" in page
        assert 'name="_save"' not in page
        for label in ("Pause", "Resume", "Cancel"):
            assert f'value="{label}"' in page

    def test_its_buttons_move_it(self, ops, order_type):
        campaign = make_campaign(order_type)

        response = ops.post(reverse("admin:notifier_campaign_move", args=[campaign.pk, "pause"]), follow=True)

        assert "1 campaign(s) paused." in messages_of(response)
        campaign.refresh_from_db()
        assert campaign.status == CampaignStatus.PAUSED

    def test_a_button_the_status_does_not_allow_says_why(self, ops, order_type):
        campaign = make_campaign(order_type, status=CampaignStatus.PAUSED)

        response = ops.post(reverse("admin:notifier_campaign_move", args=[campaign.pk, "pause"]), follow=True)

        assert f"Campaign {campaign.id} is paused: only a running or scheduled campaign can be paused." \
               in messages_of(response)

    def test_the_chunks_changelist_renders(self, ops, order_type):
        campaign = make_campaign(order_type)
        CampaignChunk.objects.create(campaign=campaign, number=1, after_recipient_id=0, last_recipient_id=5,
                                     due_at=timezone.now(), recipients=5)

        assert ops.get(reverse("admin:notifier_campaignchunk_changelist"), {"q": str(campaign.id)}).status_code == 200


class TestActions:
    def act(self, ops, action, campaigns):
        return ops.post(CHANGELIST, {"action": action, "_selected_action": [c.pk for c in campaigns]}, follow=True)

    def test_pause_resume_and_cancel_move_the_selected_campaigns(self, ops, order_type, no_fan_out,
                                                               django_capture_on_commit_callbacks):
        first, second = make_campaign(order_type, name="a"), make_campaign(order_type, name="b")

        assert "2 campaign(s) paused." in messages_of(self.act(ops, "pause", [first, second]))
        Campaign.objects.update(started_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            assert "1 campaign(s) resumed." in messages_of(self.act(ops, "resume", [first]))
        assert "2 campaign(s) cancelled." in messages_of(self.act(ops, "cancel", [first, second]))

        assert set(Campaign.objects.values_list("status", flat=True)) == {CampaignStatus.CANCELLED}
        assert no_fan_out == [("kick", first.id)]

    def test_a_campaign_the_action_does_not_fit_is_named_and_left_alone(self, ops, order_type):
        running = make_campaign(order_type, name="a")
        done = make_campaign(order_type, name="b", status=CampaignStatus.COMPLETED)

        response = self.act(ops, "cancel", [running, done])

        assert "1 campaign(s) cancelled." in messages_of(response)
        assert f"Campaign {done.id} is completed" in messages_of(response)
        done.refresh_from_db()
        assert done.status == CampaignStatus.COMPLETED


class TestCreate:
    FORM = {"name": "Winter sale", "type": "order_shipped", "data": '{"order_id": "W1"}',
            "segment": '{"user_ids": ["u_1", "u_2"]}', "channels": ["email"], "max_per_second": "100"}

    @pytest.fixture
    def users(self, db):
        return [Recipient.objects.create(user_id=f"u_{n}") for n in (1, 2)]

    def test_the_add_page_offers_a_dry_run_and_no_create_yet(self, ops, order_type):
        page = ops.get(ADD).content.decode()

        assert 'name="_dry_run"' in page and 'name="_create"' not in page

    def test_a_dry_run_shows_the_estimate_stores_nothing_and_offers_create(self, ops, order_type, users, estimates):
        response = ops.post(ADD, {**self.FORM, "_dry_run": "1"})

        page = response.content.decode()
        assert '<td id="dry-run-targeted">2</td>' in page
        assert "<th>eligible: email</th><td>2</td>" in page and "<th>suppressed: opted_out</th><td>1</td>" in page
        assert 'name="_create"' in page
        assert estimates == [("Winter sale", False, ["u_1", "u_2"])]
        assert not Campaign.objects.exists()

    def test_create_after_the_dry_run_creates_and_starts_what_was_dry_run(self, ops, order_type, users, estimates,
                                                                        no_fan_out, django_capture_on_commit_callbacks):
        dry_run_of = ops.post(ADD, {**self.FORM, "_dry_run": "1"}).context["form"]["dry_run_of"].value()

        with django_capture_on_commit_callbacks(execute=True):
            response = ops.post(ADD, {**self.FORM, "dry_run_of": dry_run_of, "_create": "1"})

        campaign = Campaign.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("admin:notifier_campaign_change", args=[campaign.pk])
        assert (campaign.name, campaign.channels, campaign.throttle_per_second) == ("Winter sale", ["email"], 100)
        assert campaign.producer.name == "admin-console"
        assert CampaignMember.objects.filter(campaign=campaign).count() == 2
        assert no_fan_out == [("start", campaign.id)]

    def test_create_of_what_changed_since_the_dry_run_dry_runs_again_instead(self, ops, order_type, users, estimates):
        dry_run_of = ops.post(ADD, {**self.FORM, "_dry_run": "1"}).context["form"]["dry_run_of"].value()

        response = ops.post(ADD, {**self.FORM, "segment": '{"all": true}', "dry_run_of": dry_run_of, "_create": "1"})

        assert not Campaign.objects.exists()
        assert "changed since its dry run" in messages_of(response)
        assert len(estimates) == 2

    def test_create_without_a_dry_run_dry_runs_first(self, ops, order_type, users, estimates):
        ops.post(ADD, {**self.FORM, "_create": "1"})

        assert not Campaign.objects.exists()
        assert len(estimates) == 1

    def test_submitting_create_twice_makes_one_campaign(self, ops, order_type, users, estimates):
        dry_run_of = ops.post(ADD, {**self.FORM, "_dry_run": "1"}).context["form"]["dry_run_of"].value()

        ops.post(ADD, {**self.FORM, "dry_run_of": dry_run_of, "_create": "1"})
        response = ops.post(ADD, {**self.FORM, "dry_run_of": dry_run_of, "_create": "1"}, follow=True)

        assert Campaign.objects.count() == 1
        assert "Already created" in messages_of(response)

    @pytest.mark.parametrize("change, field, message", [
        ({"segment": "{not json"}, "segment", "Not JSON"),
        ({"segment": '{"user_ids": ["bad id"]}'}, "segment", "segment.user_ids[0]: "),
        ({"data": "{}"}, "data", "data.order_id: Required by type 'order_shipped'."),
        ({"send_window": '{"local_time": "25:00"}'}, "send_window", "send_window.local_time: "),
        ({"max_per_second": "100001"}, "max_per_second", "throttle.max_per_second: "),
    ])
    def test_a_bad_field_is_an_error_on_it_like_the_apis(self, ops, order_type, users, estimates, change, field, message):
        response = ops.post(ADD, {**self.FORM, **change, "_dry_run": "1"})

        assert any(message in error for error in response.context["form"].errors[field]), response.context["form"].errors
        assert estimates == [] and not Campaign.objects.exists()
