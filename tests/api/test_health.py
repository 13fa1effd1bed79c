"""GET /healthz when the database is down: 503, naming the database, while the broker still answers; and
when the broker hangs: 503 naming it, within the request's Redis budget. GET /livez answers either way."""
import socket
import time

import pytest
from django.db import connection

from notifier_project.celery import app


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def database_down(django_db_blocker):
    """The default connection pointed at a port nobody listens on: every connect is refused."""
    with django_db_blocker.unblock():
        connection.close()
        saved = dict(connection.settings_dict)
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(closed_port()))
        try:
            yield
        finally:
            connection.close()
            connection.settings_dict.clear()
            connection.settings_dict.update(saved)


def test_healthz_is_503_naming_the_database_when_it_is_down(client, database_down):
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["database"].startswith("down"), body
    assert "refused" in body["checks"]["database"]  # a real refused connection, not pytest-django's guard
    assert body["checks"]["broker"] == "ok"


def test_healthz_recovers_when_the_database_is_back(client, db):
    assert client.get("/healthz").json()["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_healthz_answers_within_its_budget_naming_the_broker_when_it_hangs(client, own_redis, monkeypatch,
                                                                          settings):
    monkeypatch.setattr(app.conf, "broker_url", own_redis.url)
    own_redis.hang()  # accepts connections, never answers

    started = time.monotonic()
    response = client.get("/healthz")
    seconds = time.monotonic() - started

    assert seconds < settings.NOTIFIER_REDIS_TIMEOUT_SECONDS + 0.5, f"/healthz took {seconds:.1f} s"
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["broker"].startswith("down")


@pytest.mark.django_db
def test_a_probe_by_ip_reaches_healthz_when_allowed_hosts_names_the_public_host(client, settings):
    # docker-compose's healthcheck (and a load balancer's) asks http://127.0.0.1:8000/healthz, while
    # ALLOWED_HOSTS names the host users reach, as README "Production" says to set it.
    settings.ALLOWED_HOSTS = ["notifier.example.com"]

    probe = client.get("/healthz", HTTP_HOST="127.0.0.1:8000")
    other = client.get("/api/v1/notifications/00000000-0000-0000-0000-000000000000", HTTP_HOST="127.0.0.1:8000")

    assert probe.status_code in (200, 503) and "checks" in probe.json()
    assert other.status_code == 400  # every other path still checks the Host header


def test_livez_answers_while_the_database_is_down_and_touches_no_redis(client, database_down, monkeypatch):
    import redis

    def no_redis(*args, **kwargs):
        raise AssertionError("GET /livez must not talk to Redis")

    with monkeypatch.context() as patched:  # only for the request: the fixtures' teardown flushes Redis
        patched.setattr(redis.Redis, "execute_command", no_redis)
        response = client.get("/livez")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_livez_checks_the_host_like_every_page(client, settings):
    # Unlike /healthz it goes through every middleware (it is the bench's HTTP ceiling): README says to
    # send the public host.
    settings.ALLOWED_HOSTS = ["notifier.example.com"]

    assert client.get("/livez", HTTP_HOST="notifier.example.com").status_code == 200
    assert client.get("/livez", HTTP_HOST="127.0.0.1:8000").status_code == 400
