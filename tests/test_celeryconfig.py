"""celeryconfig.py: the queue map, the routes and the reliability settings the design relies on.

The time limits are tuned elsewhere (they follow the slowest batch); here only their shape is fixed:
both present, soft below hard, and Redis's visibility timeout above them so a running task is never
delivered twice.
"""
import socket
import time

import pytest
from kombu.exceptions import OperationalError

import celeryconfig
from notifier_project.celery import app

PRIORITIES = ("high", "medium", "low")
CHANNELS = ("push", "email", "sms", "in_app")
EXPECTED_QUEUES = {
    "route.high", "route.medium", "route.low",
    "push.high", "push.medium", "push.low",
    "email.high", "email.medium", "email.low",
    "sms.high", "sms.medium", "sms.low",
    "in_app.high", "in_app.medium", "in_app.low",
    "campaign", "maintenance",
}


def test_there_is_one_queue_per_route_priority_and_channel_priority_plus_campaign_and_maintenance():
    names = [queue.name for queue in celeryconfig.task_queues]

    assert len(names) == 17 == len(set(names))
    assert set(names) == EXPECTED_QUEUES == set(celeryconfig.ALL_QUEUES)
    assert all(queue.routing_key == queue.name for queue in celeryconfig.task_queues)
    assert {queue.name for queue in app.conf.task_queues} == EXPECTED_QUEUES
    # A typo in a route must fail loudly, not create a queue no worker consumes.
    assert celeryconfig.task_create_missing_queues is False
    assert celeryconfig.task_default_queue == "maintenance"


@pytest.mark.parametrize("priority", PRIORITIES)
def test_route_tasks_go_to_their_priority_queue(priority):
    assert celeryconfig.route_task("notifier.route", (priority,), {}, {}) == {
        "queue": f"route.{priority}", "routing_key": f"route.{priority}"}


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("priority", PRIORITIES)
def test_deliver_tasks_go_to_their_channel_and_priority_queue(channel, priority):
    route = celeryconfig.route_task("notifier.deliver", (channel, priority), {}, {})

    assert route == {"queue": f"{channel}.{priority}", "routing_key": f"{channel}.{priority}"}
    assert route["queue"] in EXPECTED_QUEUES


@pytest.mark.parametrize("name", ["notifier.sweep", "notifier.release_holds", "notifier.flush_digests",
                                  "notifier.purge_inbox", "something.else"])
def test_every_other_task_goes_to_maintenance(name):
    assert celeryconfig.route_task(name, (), {}, {}) == {"queue": "maintenance", "routing_key": "maintenance"}


def test_the_app_routes_through_route_task():
    assert app.conf.task_routes == (celeryconfig.route_task,)
    router = app.amqp.router
    assert router.route({}, "notifier.deliver", args=("sms", "low"))["queue"].name == "sms.low"
    assert router.route({}, "notifier.route", args=("high",))["queue"].name == "route.high"
    assert router.route({}, "notifier.sweep", args=())["queue"].name == "maintenance"


def test_reliability_settings():
    # A killed worker child gives its message back instead of acking it (docs/architecture.md,
    # "Reliability rules").
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is True


def test_time_limits_are_set_with_the_soft_one_first_and_redis_redelivers_only_after_both():
    soft, hard = app.conf.task_soft_time_limit, app.conf.task_time_limit

    assert soft and hard, "both time limits must be set"
    assert 0 < soft < hard
    visibility_timeout = app.conf.broker_transport_options["visibility_timeout"]
    assert visibility_timeout > hard  # otherwise Redis hands a still-running task to a second worker


def test_a_publish_to_a_broker_that_refuses_fails_at_once_rather_than_sleeping_before_its_retry():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        refused = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    with app.connection_for_write(refused) as connection:
        started = time.monotonic()
        with pytest.raises(OperationalError):
            app.send_task("notifier.sweep", connection=connection, retry=False)
        elapsed = time.monotonic() - started

    assert elapsed < 0.5, f"the publish took {elapsed:.1f} s"  # a request's whole Redis budget is 2 s


def test_beat_runs_the_sweeper_hold_release_digest_flush_and_inbox_purge():
    schedule = app.conf.beat_schedule

    assert {"sweep", "release-holds", "flush-digests", "purge-inbox"} <= set(schedule)
    tasks = {name: entry["task"] for name, entry in schedule.items()}
    assert tasks["sweep"] == "notifier.sweep"
    assert tasks["release-holds"] == "notifier.release_holds"
    assert tasks["flush-digests"] == "notifier.flush_digests"
    assert tasks["purge-inbox"] == "notifier.purge_inbox"
    app.loader.import_default_modules()
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, f"beat entry {name} names an unregistered task"
        assert entry["schedule"] > 0


def _worker_queues(path, prefix, flag) -> dict[str, list[str]]:
    """worker name → its queues, from the command lines of the Procfile or docker-compose.yml."""
    from pathlib import Path

    groups = {}
    for line in (Path(__file__).resolve().parents[1] / path).read_text().splitlines():
        words = line.split()
        if "worker" in words and flag in words:
            name = words[0].rstrip(":") if path == "Procfile" else words[words.index("-n") + 1].split("@")[0]
            groups[name.removeprefix(prefix)] = words[words.index(flag) + 1].split(",")
    return groups


def test_every_queue_belongs_to_exactly_one_worker_group():
    queues = [queue for group in celeryconfig.WORKER_GROUPS.values() for queue in group]

    assert sorted(queues) == sorted(EXPECTED_QUEUES)


@pytest.mark.parametrize("path, prefix, flag", [("Procfile", "worker_", "--queues"), ("docker-compose.yml", "", "-Q")])
def test_make_run_and_docker_compose_start_the_worker_groups(path, prefix, flag):
    assert _worker_queues(path, prefix, flag) == celeryconfig.WORKER_GROUPS


@pytest.mark.parametrize("channel", ["push", "email", "sms"])
def test_at_medium_priority_a_channel_shares_its_worker_with_no_other_channel(channel):
    [group] = [g for g in celeryconfig.WORKER_GROUPS.values() if f"{channel}.medium" in g]

    assert {queue.split(".")[0] for queue in group} == {channel}


def test_campaigns_and_low_priority_deliveries_have_workers_no_transactional_queue_uses():
    # Low priority is bulk (campaigns): its processes are its own, so a campaign draining never holds a
    # process that high or medium priority needs. Within the group, provider timeouts and circuits bound
    # what a hung provider holds.
    group = celeryconfig.WORKER_GROUPS["campaign"]

    assert set(group) == {"campaign", "in_app.low", "push.low", "email.low", "sms.low"}
    assert not [q for q in group if q.endswith((".high", ".medium"))]
