"""Measuring hooks the campaign bench loads into its Celery workers (`celery worker --include bench.probes`);
nothing in notifier imports this module.

For every task a worker process runs, the statements it sent to PostgreSQL are counted and added to a Redis
hash of its own task name, so the bench reads "queries per chunk" from the chunk task without a line of
measuring code in notifier/campaigns/fanout.py:

    bench:task:<task name>          hash: runs, queries (Django's execute/executemany calls, through
                                    connection.execute_wrapper), copies (psycopg COPY blocks, which Django
                                    does not see), seconds
    bench:task:<task name>:runs     list: queries + copies of each run, in order

and every message a worker publishes is counted by task and routing key (before_task_publish), beside the
task-sent events the bench receives from every publisher (bench/measure.py TaskEvents):

    bench:published                 hash: "<task name>@<routing key>" → messages

bench/measure.py reads these keys (task_stats, published); importing it installs no hook.
"""
from __future__ import annotations

import os
import time

import psycopg
import redis
from celery.signals import before_task_publish, task_postrun, task_prerun

TASK_KEY = "bench:task:"
PUBLISHED_KEY = "bench:published"


class QueryCounter:
    """A Django execute wrapper that counts statements; `copies` is bumped by the COPY hook below."""

    def __init__(self):
        self.queries = 0
        self.copies = 0
        self.started = time.perf_counter()

    def __call__(self, execute, sql, params, many, context):
        self.queries += 1
        return execute(sql, params, many, context)


_running: dict[str, tuple[QueryCounter, object]] = {}  # task id → its counter and execute_wrapper context
_current: QueryCounter | None = None
_redis, _redis_pid = None, 0


def _client():
    global _redis, _redis_pid
    if _redis is None or _redis_pid != os.getpid():  # one client per process: prefork children fork after import
        _redis = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
        _redis_pid = os.getpid()
    return _redis


_copy = psycopg.Cursor.copy


def _counted_copy(self, *args, **kwargs):
    if _current is not None:
        _current.copies += 1
    return _copy(self, *args, **kwargs)


psycopg.Cursor.copy = _counted_copy  # ClientCursor and Django's cursors inherit it


@task_prerun.connect
def task_started(task_id=None, task=None, **kwargs):
    global _current
    from django.db import connection

    counter = QueryCounter()
    wrapper = connection.execute_wrapper(counter)
    wrapper.__enter__()
    _running[task_id] = (counter, wrapper)
    _current = counter


@task_postrun.connect
def task_ended(task_id=None, task=None, **kwargs):
    global _current
    counter, wrapper = _running.pop(task_id, (None, None))
    _current = None
    if counter is None:
        return
    wrapper.__exit__(None, None, None)
    record(task.name, counter)


def record(task_name: str, counter: QueryCounter) -> None:
    key = TASK_KEY + task_name
    try:
        pipe = _client().pipeline(transaction=False)
        pipe.hincrby(key, "runs", 1)
        pipe.hincrby(key, "queries", counter.queries)
        pipe.hincrby(key, "copies", counter.copies)
        pipe.hincrbyfloat(key, "seconds", round(time.perf_counter() - counter.started, 6))
        pipe.rpush(key + ":runs", counter.queries + counter.copies)
        pipe.execute()
    except redis.RedisError:
        pass  # a measurement lost is not a reason to fail the task it measured


@before_task_publish.connect
def task_published(sender=None, routing_key=None, **kwargs):
    try:
        _client().hincrby(PUBLISHED_KEY, f"{sender}@{routing_key}", 1)
    except redis.RedisError:
        pass
