"""Dead letters made the way production makes them: routed notifications whose sends keep failing through
the scripted provider until their attempts run out."""
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from notifier.models import Delivery
from notifier.pipeline.dispatch import deliver_due
from notifier.pipeline.route import route_due
from tests.conftest import make_reachable_user
from tests.pipeline.test_route import make_notification
from tests.support.scripted_provider import script

SCRIPTED = "tests.support.scripted_provider"


def use_scripted_providers(settings_fixture) -> None:
    settings_fixture.NOTIFIER_CHANNEL_PROVIDERS = {"push": [SCRIPTED], "email": [SCRIPTED], "sms": [SCRIPTED]}


def make_dead_letters(notification_type, count: int, channel: str = "email", code: str = "503",
                      user_prefix: str = "dl") -> list[Delivery]:
    """`count` notifications to `count` users on `channel`, each sent until it is dead with transient
    errors of provider code `code`. Returns the dead deliveries, oldest first."""
    max_attempts = settings.NOTIFIER_RETRY_POLICY["high"]["max_attempts"]
    for i in range(count):
        recipient = make_reachable_user(f"{user_prefix}-{i}", devices=[("ios", f"{user_prefix}-token-{i}")])
        make_notification(notification_type, recipient, channels=[channel])
        target = {"email": recipient.email, "sms": recipient.phone, "push": f"{user_prefix}-token-{i}"}[channel]
        script(target, *[{"kind": "transient", "code": code}] * max_attempts)
    route_due("high", batch_size=count)
    # So many failures in a row would open the provider's circuit, and deliveries would then wait for it
    # without spending attempts (providers/circuit.py): these must use their attempts up.
    with override_settings(NOTIFIER_CIRCUIT_FAILURE_THRESHOLD=10**9):
        for _ in range(max_attempts):
            Delivery.objects.filter(status="queued").update(next_attempt_at=timezone.now())
            while deliver_due(channel, "high", batch_size=500):
                pass
    dead = Delivery.objects.filter(status="dead", channel=channel,
                                   notification__recipient__user_id__startswith=f"{user_prefix}-")
    assert dead.count() == count
    return list(dead.order_by("failed_at", "id"))
