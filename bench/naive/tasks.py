"""The naive worker (deliberately naive: see bench/naive/__init__.py). One task per recipient per channel;
each re-reads its rows one query at a time, saves each Delivery on its own, and opens a new provider
client (a new connection) for every message."""
from django.apps import apps
from django.conf import settings
from django.utils import timezone

from bench.naive.celery_app import app
from notifier.channels.base import message_from_delivery
from notifier.models import Delivery, Device, InboxItem, Notification, Recipient, Template
from notifier.pipeline.render import template_render
from notifier.providers import apns, fcm, sendgrid, twilio
from notifier.providers.base import SendResult

_fcm = None


def _provider_for(channel, device):
    config = settings.NOTIFIER_PROVIDER_CONFIG
    if channel == "email":
        return sendgrid.build({**config["sendgrid"], "channel": "email"})
    if channel == "sms":
        return twilio.build({**config["twilio"], "channel": "sms"})
    if device.platform == "ios":
        return apns.build({**config["apns"], "channel": "push"})
    # The one concession: the firebase app (and its OAuth token) is made once per process, as apps
    # usually do in their settings; a new firebase app per message would also fetch a token per message.
    global _fcm
    _fcm = _fcm or fcm.build({**config["fcm"], "channel": "push"})
    return _fcm


def _preference_allows(recipient, notification, channel) -> bool:
    """One query per preference (the naive read: no batching)."""
    Preference = next((m for m in apps.get_app_config("notifier").get_models() if m.__name__ == "Preference"), None)
    if Preference is None:
        return Recipient.objects.filter(id=recipient.id).exists()  # stands in for the lookup
    return not Preference.objects.filter(recipient_id=recipient.id, channel=channel, enabled=False).exists()


@app.task(name="naive.send_one")
def send_one(notification_id, channel):
    notification = Notification.objects.get(id=notification_id)
    recipient = Recipient.objects.get(id=notification.recipient_id)
    notification_type = notification.type
    if not _preference_allows(recipient, notification, channel):
        return
    template = Template.objects.get(type=notification_type, channel=channel, language="en", active=True)
    content = template_render(template, notification_type, notification.data)
    if channel == "push":
        targets = [(d.token, d) for d in Device.objects.filter(recipient=recipient, active=True)]
    elif channel == "email":
        targets = [(recipient.email, None)]
    elif channel == "sms":
        targets = [(recipient.phone, None)]
    else:
        targets = [(recipient.user_id, None)]
    for target, device in targets:
        delivery = Delivery(notification=notification, channel=channel, priority=notification.priority,
                            target=target, device=device, template=template, content=content,
                            status="sending", next_attempt_at=timezone.now(), attempts=1)
        delivery.save()
        if channel == "in_app":
            InboxItem(recipient=recipient, notification=notification, title=content["title"], body=content["body"],
                      action_url=content["action_url"], data=notification.data).save()
            outcome = SendResult(status="delivered")
        else:
            provider = _provider_for(channel, device)
            outcome = provider._outcome(message_from_delivery(delivery))
            if provider is not _fcm:
                provider.close()
        delivery.status = outcome.status if isinstance(outcome, SendResult) else "failed"
        delivery.sent_at = timezone.now()
        delivery.save()
