import os

import pytest
from celery.signals import worker_process_shutdown, worker_shutdown
from django.core.checks import run_checks

from notifier.models import Delivery
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from notifier.providers.registry import provider_get, provider_names
from tests.pipeline.test_route import make_notification

pytestmark = pytest.mark.django_db


def test_with_no_credentials_every_channel_uses_the_sandbox():
    assert [provider_names(c) for c in ("push", "email", "sms")] == [["sandbox"]] * 3


def test_manage_py_check_warns_about_incomplete_provider_settings(settings):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"push": ["sandbox"], "email": ["sendgrid"], "sms": ["twilio"]}
    settings.NOTIFIER_PROVIDER_CONFIG = {"sendgrid": {"api_key": "SG.x"}, "twilio": {"account_sid": "AC1"}}

    messages = [m.msg for m in run_checks() if m.id == "notifier.W001"]

    assert any(m.startswith("email provider 'sendgrid'") and "from" in m.lower() for m in messages), messages
    assert any(m.startswith("sms provider 'twilio'") and "auth_token" in m for m in messages), messages


def test_a_provider_that_cannot_be_built_fails_its_deliveries_permanently(settings, order_type, reachable_user):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"push": ["no.such.module"], "email": ["sandbox"], "sms": ["sandbox"]}
    make_notification(order_type, reachable_user, channels=["push"])
    route_due("high")

    deliver_due("push", "high")

    for delivery in Delivery.objects.filter(channel="push"):
        assert delivery.status == "failed"
        assert "provider not configured correctly" in delivery.last_error


def test_a_provider_is_built_once_per_process_and_channel():
    first = provider_get("sandbox", "push")

    assert provider_get("sandbox", "push") is first  # the same instance, so the same connection pool
    assert provider_get("sandbox", "email") is not first


@pytest.mark.parametrize("signal", [worker_process_shutdown, worker_shutdown], ids=["child exits", "worker stops"])
def test_worker_shutdown_closes_every_built_provider(signal, monkeypatch):
    import notifier_project.celery  # noqa: F401  (connects the handlers, as the worker's import does)

    closed = []
    providers = [provider_get("sandbox", "push"), provider_get("sandbox", "sms")]
    for provider in providers:
        monkeypatch.setattr(provider, "close", lambda provider=provider: closed.append(provider))

    signal.send(sender=None, pid=os.getpid(), exitcode=0)

    assert closed == providers
    assert provider_get("sandbox", "push") is not providers[0]  # forgotten: a new one is built


def test_sdk_sessions_read_proxy_and_ca_settings_from_the_environment_once(monkeypatch):
    import requests

    from notifier.providers.base import session_read_environment_once

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session, local = requests.Session(), requests.Session()

    session_read_environment_once(session, "https://fcm.googleapis.com")
    session_read_environment_once(local, "http://127.0.0.1:8444")

    assert session.trust_env is False  # no per-request lookups of netrc, proxies and CA bundle
    assert session.proxies["https"] == "http://proxy.internal:3128"
    assert session.verify == "/etc/ssl/certs/ca-certificates.crt"
    assert "http" not in local.proxies and "https" not in local.proxies  # NO_PROXY honoured
