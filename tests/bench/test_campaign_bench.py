"""The campaign bench's own pieces, fast and without its stack: COPY seeding kept between runs, the fakes'
ledgers counting recipients (a batch of 1,000 personalizations is 1,000 messages), the RSS sampler, Celery
messages counted from task-sent events, the workers' query probes, the worker groups read from
celeryconfig, and the checks that fail the scenario. The scenario itself needs the campaign API and
fan-out (`make bench SCENARIO=campaign BENCH_CAMPAIGN_SIZES=10000`)."""
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import requests
from django.db import connection

from bench import campaign_seed, harness, measure
from bench.fakes import Ledger, serve_control, targets_of
from bench.report import _met, render, row
from bench.scenarios import campaign
from bench.tokens import campaign_push_token
from notifier.models import Device, Recipient, RecipientTopic
from tests.fakes.sendgrid import FakeSendGrid


@pytest.mark.django_db
def test_the_seed_copies_users_topics_and_devices_once_and_then_only_what_is_missing():
    first = campaign_seed.setup([30], push=20)

    assert first["written"] == {"users": 30, "topic 20": 20, "topic 30": 30, "devices": 20, "warm-up users": 300}
    users = Recipient.objects.filter(user_id__startswith=campaign_seed.PREFIX)
    assert users.count() == 30
    assert users.filter(marketing_opt_in=True, email__endswith="@example.com").count() == 30
    assert users.get(user_id="camp-u7").email == "camp-u7@example.com"
    assert set(RecipientTopic.objects.filter(topic="bench-campaign-30").values_list("recipient__user_id", flat=True)) \
        == {f"camp-u{i}" for i in range(30)}
    assert Device.objects.get(recipient__user_id="camp-u3").token == campaign_push_token(3)
    assert Device.objects.filter(token__startswith="bench-cpush-").count() == 20

    # The warm-up campaign's users are apart (one marketing message a day per user): 100, on every channel.
    warm = Recipient.objects.filter(user_id__startswith=campaign_seed.WARM_PREFIX)
    assert warm.count() == 100 and not warm.filter(user_id__startswith=campaign_seed.PREFIX).exists()
    assert RecipientTopic.objects.filter(topic=campaign_seed.WARM_TOPIC, recipient__in=warm).count() == 100
    assert Device.objects.filter(recipient__in=warm).count() == 100

    assert campaign_seed.setup([30], push=20)["written"] == {"users": 0, "topic 20": 0, "topic 30": 0,
                                                             "devices": 0, "warm-up users": 0}
    grown = campaign_seed.setup([150], push=20)["written"]
    assert grown["users"] == 120 and grown["topic 150"] == 150 and grown["devices"] == 0
    assert users.count() == 150


def _mail(addresses, text="Hello"):
    return {"personalizations": [{"to": [{"email": a}], "custom_args": {"delivery_id": str(i)}}
                                 for i, a in enumerate(addresses)],
            "from": {"email": "bench@example.com"}, "subject": "s", "content": [{"type": "text/plain", "value": text}]}


def test_the_sendgrid_ledger_counts_personalizations_not_requests_and_names_duplicates():
    with FakeSendGrid() as fake:
        control = serve_control(fake)
        url = f"http://127.0.0.1:{control.server_address[1]}"
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        batch = [f"camp-u{i}@example.com" for i in range(1000)]
        for body in (_mail(batch), _mail(["camp-u5@example.com"]), _mail(["probe@example.com"], "x bref0123456789abcdef")):
            assert requests.post(fake.url + "/v3/mail/send", json=body, headers=headers, timeout=10).status_code == 202

        targets = requests.get(url + "/targets", params={"prefix": "camp-u", "list": "1"}, timeout=10).json()
        summary = requests.get(url + "/summary", timeout=10).json()
        arrivals = requests.get(url + "/arrivals", timeout=10).json()["arrivals"]

        assert (targets["targets"], targets["distinct"], targets["duplicated"]) == (1001, 1000, 1)
        assert targets["examples"] == ["camp-u5@example.com"] and targets["counts"]["camp-u5@example.com"] == 2
        assert (summary["requests"], summary["messages"]) == (3, 1002)
        assert list(arrivals) == ["0123456789abcdef"]
        assert fake.requests == [] and fake.accepted == []  # drained: a million emails are not kept as requests

        requests.post(url + "/reset", timeout=10)
        assert requests.get(url + "/summary", timeout=10).json()["messages"] == 0
        control.shutdown()


def test_targets_are_one_per_message_on_every_provider():
    sendgrid = SimpleNamespace(recipients=lambda request: ["a@x.org", "b@x.org"])
    assert targets_of(sendgrid, SimpleNamespace()) == ["a@x.org", "b@x.org"]
    assert targets_of(None, SimpleNamespace(target="fcm-token")) == ["fcm-token"]  # FCM: message.token
    assert targets_of(None, SimpleNamespace(device_token="apns-token")) == ["apns-token"]  # APNs: in the path
    ledger = Ledger(SimpleNamespace(recipients=lambda request: []))
    ledger.add([SimpleNamespace(target="t1", received_at=2.0, raw=b"{}"),
                SimpleNamespace(target="t1", received_at=1.0, raw=b"{}")])
    assert ledger.targets("t")["duplicated"] == 1 and ledger.summary()["first_at"] == 1.0


def test_the_rss_sampler_follows_children_and_their_growth():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5); b = b'x' * (80 << 20); "
                                                    "time.sleep(1.5)"])
    try:
        sampler = measure.RssSampler({"test": child.pid}, interval=0.1).start()
        time.sleep(1.4)
        result = sampler.stop()
    finally:
        child.kill()
        child.wait()
    [entry] = [p for p in result["processes"] if p["pid"] == child.pid]
    assert entry["peak"] - entry["first"] >= 70
    assert result["growth_mb"] >= 70 and result["growth_of"] == "test"
    assert measure.rss_mb(2**22 + 12345) is None  # a pid that does not exist


def test_task_events_count_every_message_published():
    from notifier_project.celery import app

    events = measure.TaskEvents(app).start()
    for _ in range(3):
        app.send_task("notifier.sweep", queue="maintenance", routing_key="maintenance")
    app.send_task("notifier.deliver", args=["email", "low"], queue="email.low", routing_key="email.low")
    deadline = time.monotonic() + 10
    while sum(events.sent.values()) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    counted = events.stop()

    assert counted["sent"] == 4
    assert counted["by_task"] == {"notifier.sweep@maintenance": 3, "notifier.deliver@email.low": 1}


@pytest.mark.django_db
def test_the_probes_count_each_task_run_statements_and_copies(clean_redis):
    from bench import probes

    task = SimpleNamespace(name="notifier.campaign_chunk")
    probes.task_started(task_id="t1", task=task)
    with connection.cursor() as cursor:
        for _ in range(3):
            cursor.execute("SELECT 1")
        with cursor.copy("COPY (SELECT 1) TO STDOUT") as copy:
            list(copy)
    probes.task_ended(task_id="t1", task=task)
    probes.task_published(sender="notifier.deliver", routing_key="email.low")

    stats = measure.task_stats(clean_redis, "notifier.campaign_chunk")
    assert (stats["runs"], stats["queries"], stats["copies"]) == (1, 3, 1)
    assert stats["per_run"] == {"mean": 4.0, "max": 4, "min": 4}
    assert measure.tasks_recorded(clean_redis) == ["notifier.campaign_chunk"]
    assert measure.published(clean_redis) == {"notifier.deliver@email.low": 1}
    with connection.cursor() as cursor:  # outside a task nothing is counted
        cursor.execute("SELECT 1")
    assert measure.task_stats(clean_redis, "notifier.campaign_chunk")["queries"] == 3


def test_worker_groups_come_from_celeryconfig_with_the_procfiles_options(monkeypatch):
    import celeryconfig

    commands = {c["group"]: c for c in harness.worker_group_commands(include="bench.probes")}
    assert set(commands) == set(celeryconfig.WORKER_GROUPS)
    for group, queues in celeryconfig.WORKER_GROUPS.items():
        args = commands[group]["args"]
        assert args[args.index("--queues") + 1] == ",".join(queues)
        assert args[-2:] == ["--include", "bench.probes"] and any("-bench@%h" in a for a in args)

    monkeypatch.setattr(harness, "worker_groups", lambda: {"newgroup": ["campaign"]})
    [new] = harness.worker_group_commands()
    assert new["concurrency"] == 1 and new["note"] == "no Procfile line: concurrency 1"


def _delivered(size, **changes):
    entry = {"messages": size, "distinct": size, "duplicated": 0, "missing": 0, "unexpected": 0, "examples": []}
    return {"email": {**entry, **changes}, "in_app": dict(entry)}


def test_the_checks_fail_on_duplicates_missing_recipients_counters_and_lost_probes():
    good_status = {"status": "completed", "targeted": 10, "sent": 20, "eligible": {"email": 10, "in_app": 10}}
    probes_ok = {"missing": 0, "failed": 0, "sent": 50, "failures": []}
    channels = ["email", "in_app"]
    assert campaign.problems_of(10, channels, _delivered(10), good_status, probes_ok) == []

    duplicated = campaign.problems_of(10, channels, _delivered(10, messages=11, duplicated=1,
                                                               examples=["camp-u1@example.com"]), good_status, probes_ok)
    assert len(duplicated) == 1 and "1 duplicated" in duplicated[0] and "camp-u1@example.com" in duplicated[0]
    assert "2 missing" in campaign.problems_of(10, channels, _delivered(10, distinct=8, messages=8, missing=2),
                                               good_status, probes_ok)[0]
    wrong = campaign.problems_of(10, channels, _delivered(10), {**good_status, "status": "running", "sent": 19},
                                 {**probes_ok, "missing": 1})
    assert [p.split(" ")[0] for p in wrong] == ["campaign", "counter", "high-priority"]
    nested = {"status": "completed", "counters": {"targeted": 10, "sent": 20, "eligible": {"email": 9, "in_app": 10}}}
    assert campaign.problems_of(10, channels, _delivered(10), nested, probes_ok) == [
        "counter eligible.email = 9, expected 10"]


def test_messages_per_chunk_leave_out_the_probes_and_beats_periodic_tasks():
    result = {"messages": {"by_task": {"notifier.route@route.low": 40, "notifier.deliver@email.low": 35,
                                       "notifier.route@route.high": 50, "notifier.sweep@maintenance": 9}}}
    ours, other = campaign.messages_per_chunk(result)
    assert ours == 75 and other == {"notifier.route@route.high": 50, "notifier.sweep@maintenance": 9}


def test_a_target_at_most_renders_and_is_met_at_the_limit():
    at_limit = row("campaign", "messages per chunk", 2, "messages", "<=", 2, key="k")
    assert _met(at_limit) == "yes" and _met({**at_limit, "value": 2.5}) == "**no**"
    table = render({"scenarios": {"campaign": {"rows": [at_limit]}}, "facts": {}})
    assert "| campaign | messages per chunk | notifier | ≤ 2 messages | 2 messages | yes |" in table


def _result(problems=()):
    task = {"runs": 10, "queries": 130, "copies": 20, "seconds": 3.0, "per_run": {"mean": 15.0, "max": 24, "min": 10}}
    delivered = _delivered(10_000)
    delivered["email"]["requests"] = 10
    return {"size": 10_000, "channels": ["email", "in_app"], "seconds": 4.0, "accepted_s": 0.1, "chunks": 10,
            "problems": list(problems), "progress": {"ended": "all delivered"}, "status": {"status": "completed"},
            "delivered": delivered, "published_by_workers": {"notifier.deliver@email.low": 16},
            "messages": {"sent": 70, "by_task": {"notifier.campaign_chunk@campaign": 10, "notifier.route@route.high": 50,
                                                 "notifier.deliver@email.low": 10}, "received": {}},
            "queries": {"chunk_task": "notifier.campaign_chunk", "chunk": task, "tasks": {"notifier.campaign_chunk": task}},
            "rss": {"processes": [{"name": "worker-campaign child", "pid": 1, "first": 100.0, "last": 112.5, "peak": 130.0,
                                   "samples": 9}], "peak_mb": 130.0, "peak_of": "worker-campaign child",
                    "growth_mb": 12.5, "growth_of": "worker-campaign child"},
            "high_priority": {"p50": 80.0, "p95": 150.0, "p99": 300.0, "max": 310.0, "n": 20, "sent": 20, "arrived": 20,
                              "missing": 0, "failed": 0, "failures": []},
            "groups": [{"group": "campaign", "queues": ["campaign"], "concurrency": 3, "note": ""}]}


def test_a_run_becomes_rows_with_its_figures_and_a_wrong_one_has_no_rate():
    rows = {r["figure"].split(": ", 1)[1]: r for r in campaign.email_rows(_result())}

    assert rows["deliveries/s"]["value"] == 5_000.0 and _met(rows["deliveries/s"]) == "**no**"
    assert rows["Celery messages per chunk"]["value"] == 2.0 and _met(rows["Celery messages per chunk"]) == "yes"
    assert rows["queries per chunk (max)"]["value"] == 24
    assert rows["worker RSS growth, POST → end"]["value"] == 12.5
    assert rows["high-priority POST → provider p99 during the run"]["value"] == 300.0
    assert "10,000 messages to 10,000 recipients in 10 requests" in rows["POST → last delivery"]["setup"]

    wrong = {r["figure"].split(": ", 1)[1]: r for r in campaign.email_rows(_result(["email: 1 duplicated"]))}
    assert wrong["deliveries/s"]["value"] is None and "1 duplicated" in wrong["deliveries/s"]["setup"]
    assert campaign.push_rows({**_result(), "channels": ["push"], "delivered": {"push": _delivered(10_000)["email"]}})[0][
        "value"] == 2_500.0
