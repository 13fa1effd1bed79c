"""Write operations behind the API and admin that are not part of the delivery pipeline."""
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from notifier.models import Device, NotificationType, Recipient, Template


def recipient_upsert(user_id: str, fields: dict) -> tuple[Recipient, bool]:
    recipient, created = Recipient.objects.get_or_create(user_id=user_id, defaults=fields)
    if not created:
        for name, value in fields.items():
            if name == "phone":
                recipient.set_phone(value)
            else:
                setattr(recipient, name, value)
        recipient.save()
    return recipient, created


def device_register(recipient: Recipient, platform: str, token: str) -> tuple[Device, bool]:
    """Register or refresh a token. Idempotent on the token; a token seen on another user moves to this
    one (the phone changed hands or the app's login changed); a deactivated token is reactivated, since
    the app only re-registers a token the OS handed it again."""
    now = timezone.now()
    device, created = Device.objects.update_or_create(
        token=token,
        defaults={
            "recipient": recipient, "platform": platform, "active": True, "last_seen_at": now,
            "deactivated_at": None, "deactivated_reason": "",
        },
    )
    return device, created


def device_unregister(recipient: Recipient, token: str) -> bool:
    updated = Device.objects.filter(recipient=recipient, token=token, active=True).update(
        active=False, deactivated_at=timezone.now(), deactivated_reason="unregistered by the app"
    )
    return updated == 1


def template_publish(**fields) -> Template:
    """Publish a new version of a type × channel × language template; the old versions stay readable."""
    with transaction.atomic():
        # Lock the type so two publishers cannot both take the same next version number.
        NotificationType.objects.select_for_update().filter(pk=fields["type"].pk).first()
        versions = Template.objects.filter(type=fields["type"], channel=fields["channel"], language=fields["language"])
        latest = versions.aggregate(latest=Max("version"))["latest"] or 0
        versions.filter(active=True).update(active=False)
        return Template.objects.create(**fields, version=latest + 1, active=True)
