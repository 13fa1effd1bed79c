"""Producer webhooks: a real HTTP endpoint receives the signed batches."""
import json
import re
from pathlib import Path

import pytest
from django.utils import timezone

from notifier.models import Delivery, Notification
from tests.fakes.http import FakeHTTPServer, Reply

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


class ProducerEndpoint(FakeHTTPServer):
    """A producer's webhook receiver: records each POST (the JSON body parsed, the raw bytes kept) and
    answers as programmed with set_default (200 unless told otherwise)."""

    def parse_body(self, headers, raw):
        return json.loads(raw)

    def respond(self, request, outcome):
        body = b"{}" if outcome.body is None else str(outcome.body).encode()
        return Reply(outcome.status, dict(outcome.headers), body)


@pytest.fixture
def endpoint():
    with ProducerEndpoint() as server:
        yield server


@pytest.fixture
def hooked_producer(producer, endpoint):
    producer.webhook_url = f"{endpoint.url}/notifier-events"
    producer.save()
    return producer


@pytest.fixture
def readme_verify():
    """The `verify` function of README's "Verifying a signature", run exactly as written there."""
    section = README[README.index("### Verifying a signature"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    return namespace["verify"]


def make_delivery(producer, notification_type, recipient, channel="email", status="sent", **fields):
    notification = Notification.objects.create(
        producer=producer, type=notification_type, recipient=recipient, priority="high", due_at=timezone.now(),
        idempotency_key=fields.pop("idempotency_key", ""),
    )
    return Delivery.objects.create(notification=notification, channel=channel, priority="high",
                                   target=fields.pop("target", recipient.email), next_attempt_at=timezone.now(),
                                   status=status, **fields)


@pytest.fixture
def ops(client):
    """A Django test client logged in to admin as a superuser."""
    from django.contrib.auth.models import User

    User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.login(username="ops", password="pw")
    return client
