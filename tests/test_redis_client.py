"""The shared Redis client's guards, against a real redis-server of the test's own that hangs (SIGSTOP)."""
import threading
import time

import redis

from notifier.middleware import RedisBudgetMiddleware
from notifier.redis_client import (
    RedisBudgetSpent,
    RedisUnavailable,
    breaker_for,
    redis_budget,
    redis_client_for,
)


def timed(call):
    started = time.monotonic()
    try:
        call()
        outcome = "ok"
    except redis.RedisError as error:
        outcome = type(error)
    return outcome, time.monotonic() - started


def test_all_redis_calls_within_one_budget_wait_at_most_the_budget_together(own_redis, settings):
    settings.NOTIFIER_REDIS_BREAKER_SECONDS = 0  # the budget alone
    client = redis_client_for(own_redis.url)
    client.ping()
    own_redis.hang()

    with redis_budget(1.0):
        first = timed(lambda: client.get("a"))
        second = timed(lambda: client.get("b"))

    assert first[0] is redis.TimeoutError and 0.9 < first[1] < 1.5
    assert second[0] is RedisBudgetSpent and second[1] < 0.05


def test_after_a_timeout_calls_fail_at_once_until_the_window_ends_then_an_answer_closes_the_breaker(
    own_redis, settings
):
    settings.NOTIFIER_REDIS_TIMEOUT_SECONDS = 0.5
    settings.NOTIFIER_REDIS_BREAKER_SECONDS = 1
    client = redis_client_for(own_redis.url)
    client.ping()
    own_redis.hang()

    assert timed(lambda: client.get("a"))[0] is redis.TimeoutError
    outcome, seconds = timed(lambda: client.get("a"))
    assert outcome is RedisUnavailable and seconds < 0.05

    own_redis.resume()
    time.sleep(1.1)
    assert timed(lambda: client.set("a", "1"))[0] == "ok"
    assert timed(lambda: client.get("a"))[0] == "ok"


def test_when_the_window_ends_one_caller_tries_and_the_others_still_fail_at_once(own_redis, settings):
    settings.NOTIFIER_REDIS_TIMEOUT_SECONDS = 1
    settings.NOTIFIER_REDIS_BREAKER_SECONDS = 0.5
    client = redis_client_for(own_redis.url)
    client.ping()
    own_redis.hang()
    assert timed(lambda: client.get("a"))[0] is redis.TimeoutError
    time.sleep(0.6)

    probe = {}
    thread = threading.Thread(target=lambda: probe.update(result=timed(lambda: client.get("a"))))
    thread.start()
    time.sleep(0.2)  # the probe is waiting on the hanging server
    others = [timed(lambda: client.get("b")) for _ in range(5)]
    thread.join()

    assert probe["result"][0] is redis.TimeoutError and probe["result"][1] > 0.7
    assert all(outcome is RedisUnavailable and seconds < 0.05 for outcome, seconds in others)


def test_every_database_of_a_server_shares_its_breaker_and_other_servers_have_their_own():
    assert breaker_for("redis://10.0.0.1:6379/0") is breaker_for("redis://10.0.0.1/12")
    assert breaker_for("redis://10.0.0.1:6379/0") is not breaker_for("redis://10.0.0.1:6380/0")
    assert breaker_for("redis://10.0.0.1/0") is not breaker_for("amqp://guest@10.0.0.1//")


def test_each_request_gets_one_budget_for_all_its_redis_work(own_redis, settings, rf):
    settings.NOTIFIER_REDIS_BREAKER_SECONDS = 0  # the budget alone
    client = redis_client_for(own_redis.url)
    client.ping()
    own_redis.hang()

    def view(request):
        return [timed(lambda: client.get(key)) for key in ("quota", "flag", "other")]

    started = time.monotonic()
    outcomes = RedisBudgetMiddleware(view)(rf.post("/api/v1/notifications"))

    assert time.monotonic() - started < settings.NOTIFIER_REDIS_TIMEOUT_SECONDS + 0.3
    assert [outcome for outcome, _ in outcomes] == [redis.TimeoutError, RedisBudgetSpent, RedisBudgetSpent]


def test_a_server_that_refuses_connections_opens_its_breaker_and_the_connect_is_charged(settings):
    import socket

    from notifier.redis_client import redis_time_left

    settings.NOTIFIER_REDIS_BREAKER_SECONDS = 5
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = redis_client_for(f"redis://127.0.0.1:{port}/0")

    with redis_budget(1.0):
        first = timed(client.ping)
        left = redis_time_left()
        second = timed(client.ping)

    assert first[0] is redis.ConnectionError
    assert left < 1.0  # the connect attempt was charged to the request's budget
    assert second[0] is RedisUnavailable and second[1] < 0.05  # no second connect: the breaker is open
