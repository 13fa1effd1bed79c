"""Celery configuration: queues, routes, the beat schedule and the reliability settings, in one place.

Messages are wake-ups, not work items (docs/architecture.md, "Throughput rules"): `notifier.route` drains
due notifications of one priority, `notifier.deliver` drains due deliveries of one channel × priority. The
queue is chosen from those arguments, so transactional traffic never waits behind a campaign.
"""
import os

from kombu import Queue

PRIORITIES = ("high", "medium", "low")
CHANNELS = ("push", "email", "sms", "in_app")

ROUTE_QUEUES = [f"route.{priority}" for priority in PRIORITIES]
DELIVER_QUEUES = [f"{channel}.{priority}" for channel in CHANNELS for priority in PRIORITIES]
OTHER_QUEUES = ["campaign", "maintenance"]
ALL_QUEUES = ROUTE_QUEUES + DELIVER_QUEUES + OTHER_QUEUES


# The worker groups `make run` (Procfile) and docker-compose.yml start, and the queues each consumes: every
# queue belongs to exactly one group (tests/test_celeryconfig.py checks both files against this table).
# High priority keeps a group of its own. At medium and low, each channel with a provider behind it has its
# own group, so a provider that hangs holds only its own channel's processes: "if the SMS provider is down,
# push and email continue unaffected". Within a group, provider timeouts (NOTIFIER_PROVIDER_TIMEOUT_SECONDS)
# and the provider's circuit (notifier/providers/circuit.py) bound how long a hung provider holds a batch.
# Campaigns (and other low-priority bulk) have a group of their own: their chunks and low-priority deliveries
# never occupy a process that transactional traffic needs.
WORKER_GROUPS = {
    "high": ["route.high", "push.high", "email.high", "sms.high", "in_app.high"],
    "medium": ["route.medium", "in_app.medium"],
    "low": ["route.low", "maintenance"],
    "push": ["push.medium"],
    "email": ["email.medium"],
    "sms": ["sms.medium"],
    "campaign": ["campaign", "in_app.low", "push.low", "email.low", "sms.low"],
}


broker_url = os.environ.get("CELERY_BROKER_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
_on_rabbitmq = broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))

# Quorum queues on RabbitMQ survive a node loss; Redis lists need `maxmemory-policy noeviction`.
_queue_arguments = {"x-queue-type": "quorum"} if _on_rabbitmq else None
task_queues = [Queue(name, routing_key=name, queue_arguments=_queue_arguments) for name in ALL_QUEUES]
task_default_queue = "maintenance"
task_create_missing_queues = False


def route_task(name, args, kwargs, options, task=None, **kw):
    if name == "notifier.route":
        return {"queue": f"route.{args[0]}", "routing_key": f"route.{args[0]}"}
    if name == "notifier.deliver":
        queue = f"{args[0]}.{args[1]}"
        return {"queue": queue, "routing_key": queue}
    if name in ("notifier.campaign_advance", "notifier.campaign_chunk"):
        return {"queue": "campaign", "routing_key": "campaign"}
    return {"queue": "maintenance", "routing_key": "maintenance"}


task_routes = (route_task,)

# --- reliability (docs/architecture.md, "Reliability rules") ------------------------------------------
# Ack after the task ran, and give the message back when the worker process dies (SIGKILL, OOM):
# otherwise a killed child acks its task and the wake-up is lost (the sweeper would still recover it).
task_acks_late = True
task_reject_on_worker_lost = True
# One message at a time per process: a task drains a whole batch, so prefetching more only delays others.
worker_prefetch_multiplier = 1
# Our dead letter is the Delivery row; Celery's result store is not used.
task_ignore_result = True
task_store_errors_even_if_ignored = False
# Above the slowest batch a deliver task may send: 200 messages on 8 threads at a 10 s provider timeout
# is about 250 s. A task stopped mid-batch records nothing, and its rows, still "sending", would be sent
# again once their lease ends; so the limits must not cut a batch short, and the lease
# (NOTIFIER_CLAIM_LEASE_SECONDS) must outlast the hard limit (`manage.py check` says so when it does not).
task_soft_time_limit = int(os.environ.get("NOTIFIER_TASK_SOFT_TIME_LIMIT_SECONDS", "300"))
task_time_limit = task_soft_time_limit + 30
worker_cancel_long_running_tasks_on_connection_loss = True
worker_detect_quorum_queues = True
broker_connection_retry_on_startup = True
# Publishing must never hang a request (celery/celery#6046): fail fast, the sweeper publishes later.
# NOTIFIER_REDIS_TIMEOUT_SECONDS as settings.py reads it (NOTIFIER_PUBLISH_TIMEOUT_SECONDS: its old name).
broker_connection_timeout = float(
    os.environ.get("NOTIFIER_REDIS_TIMEOUT_SECONDS", os.environ.get("NOTIFIER_PUBLISH_TIMEOUT_SECONDS", "2"))
)
broker_transport_options = {
    # Longer than any task may run (task_time_limit), so Redis does not redeliver a running task.
    "visibility_timeout": 3600,
    "socket_connect_timeout": 2,
    "socket_timeout": 10,
    "max_retries": 1,
    # kombu sleeps interval_start (2 s by default) before that one retry: a publish to a broker that refuses
    # would then spend a request's whole Redis budget asleep. Retry at once; the sweeper publishes later.
    "interval_start": 0,
}
task_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True
worker_send_task_events = True  # Flower shows tasks live
task_send_sent_event = True

# --- beat ----------------------------------------------------------------------------------------------
_RELEASE_HOLDS_INTERVAL = float(os.environ.get("NOTIFIER_RELEASE_HOLDS_INTERVAL_SECONDS", "60"))
# settings.NOTIFIER_SWEEP_INTERVAL_SECONDS reads the same variable: the sweeper knows how often it runs.
_SWEEP_INTERVAL = float(os.environ.get("NOTIFIER_SWEEP_INTERVAL_SECONDS", "5"))
_PRODUCER_WEBHOOKS_INTERVAL = float(os.environ.get("NOTIFIER_PRODUCER_WEBHOOKS_INTERVAL_SECONDS", "5"))
beat_schedule = {
    # Wakes queues that have due rows (scheduled sends, retries whose backoff ended, anything whose
    # wake-up was lost to a broker outage) and returns deliveries whose worker died to the queue.
    "sweep": {"task": "notifier.sweep", "schedule": _SWEEP_INTERVAL, "options": {"expires": 30}},
    # Releases deliveries held for quiet hours or a rate-limit window whose moment has come
    # (notifier/pipeline/holds.py); on the maintenance queue, like every task that is not route or deliver.
    # A hold waits at most one interval past its moment (the e2e test shortens it to see a real tick).
    "release-holds": {"task": "notifier.release_holds", "schedule": _RELEASE_HOLDS_INTERVAL,
                      "options": {"expires": max(1.0, _RELEASE_HOLDS_INTERVAL - 5)}},
    # Sends escalations whose in-app item is still unread at their moment, and ends those read before
    # (notifier/pipeline/escalation.py); as often as release-holds.
    "release-escalations": {"task": "notifier.release_escalations", "schedule": _RELEASE_HOLDS_INTERVAL,
                            "options": {"expires": max(1.0, _RELEASE_HOLDS_INTERVAL - 5)}},
    # Sends digests whose window has ended, each exactly once (notifier/pipeline/digest.py).
    "flush-digests": {"task": "notifier.flush_digests", "schedule": 30.0, "options": {"expires": 25}},
    # POSTs producers' status events (notifier/producer_webhooks.py); an event waits at most one interval
    # before its first try. On the maintenance queue: a run starts no new POST after 20 s.
    "send-producer-webhooks": {"task": "notifier.send_producer_webhooks", "schedule": _PRODUCER_WEBHOOKS_INTERVAL,
                               "options": {"expires": max(1.0, _PRODUCER_WEBHOOKS_INTERVAL)}},
    # Starts scheduled campaigns whose moment has come and advances running ones (notifier/campaigns/fanout.py):
    # their chunks advance them too, this tick catches a backlog that cleared or a chunk that was lost.
    "campaigns-tick": {"task": "notifier.campaigns_tick", "schedule": 1.0, "options": {"expires": 5}},
    # Deletes producer events older than NOTIFIER_PRODUCER_EVENT_RETENTION_DAYS, in batches.
    "purge-producer-events": {"task": "notifier.purge_producer_events", "schedule": 3600.0,
                              "options": {"expires": 1800}},
    # Deletes inbox items older than NOTIFIER_INBOX_RETENTION_DAYS, in batches.
    "purge-inbox": {"task": "notifier.purge_inbox", "schedule": 3600.0, "options": {"expires": 1800}},
}
