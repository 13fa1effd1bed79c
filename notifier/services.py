"""Write operations behind the API and admin that are not part of the delivery pipeline."""
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from notifier.models import Device, NotificationType, Recipient, RecipientTopic, Template, Unsubscription
from notifier.producer_webhooks import producer_event_unsubscribed


def recipients_upsert(entries) -> tuple[dict[str, Recipient], set[str]]:
    """Find or create recipients by user id, setting the fields each (user_id, fields) entry gives (a
    notification's inline contact, a PUT /users/{user_id}, or nothing). Returns the recipients by user id
    and the user ids it created. Only what changed is written, and a new phone number clears the old
    number's SMS opt-out. Four queries at most, whatever the number of entries; the one way recipients
    are created."""
    entries = list(entries)
    by_user_id = Recipient.objects.in_bulk([user_id for user_id, _ in entries], field_name="user_id")
    missing = {user_id: Recipient(user_id=user_id, **fields) for user_id, fields in entries if user_id not in by_user_id}
    if missing:
        # ignore_conflicts: a concurrent request may create the same user; we read back whichever won.
        Recipient.objects.bulk_create(list(missing.values()), ignore_conflicts=True)
        by_user_id.update(Recipient.objects.in_bulk(list(missing), field_name="user_id"))
    changed, names = {}, set()
    for user_id, fields in entries:
        recipient = by_user_id[user_id]
        updates = {name: value for name, value in fields.items() if getattr(recipient, name) != value}
        for name, value in updates.items():
            if name == "phone":
                recipient.set_phone(value)
                names.add("sms_opted_out_at")
            else:
                setattr(recipient, name, value)
        if updates:
            changed[user_id] = recipient
            names.update(updates)
    if changed:
        now = timezone.now()
        for recipient in changed.values():
            recipient.updated_at = now  # bulk_update does not touch auto_now fields
        Recipient.objects.bulk_update(list(changed.values()), [*sorted(names), "updated_at"])
    return by_user_id, set(missing)


def recipient_upsert(user_id: str, fields: dict | None = None) -> tuple[Recipient, bool]:
    """recipients_upsert for one user: the recipient, and whether it was created."""
    recipients, created = recipients_upsert([(user_id, fields or {})])
    return recipients[user_id], user_id in created


# A user's topics are listed whole by GET /api/v1/users/{user_id}/topics and PUT /users/{user_id}: bounded.
MAX_TOPICS_PER_USER = 1000


class TooManyTopics(Exception):
    """Subscribing would give the user more than MAX_TOPICS_PER_USER topics."""


def recipient_save(user_id: str, fields: dict) -> tuple[Recipient, bool]:
    """PUT /api/v1/users/{user_id}: the recipient's fields set (recipient_upsert) and, when `fields` has
    `topics`, the user's topics replaced by that list, in one transaction."""
    fields = dict(fields)
    topics = fields.pop("topics", None)
    with transaction.atomic():
        recipient, created = recipient_upsert(user_id, fields)
        if topics is not None:
            recipient_topics_replace(recipient, topics)
    return recipient, created


def recipient_topics_replace(recipient: Recipient, topics: list[str]) -> None:
    """Make `topics` the user's topics: the others are removed, the missing ones added (each subscription
    keeps its created_at). Two statements whatever the number of topics."""
    if len(topics) > MAX_TOPICS_PER_USER:
        raise TooManyTopics()
    RecipientTopic.objects.filter(recipient=recipient).exclude(topic__in=topics).delete()
    RecipientTopic.objects.bulk_create([RecipientTopic(recipient=recipient, topic=topic) for topic in topics],
                                       ignore_conflicts=True)


def topic_subscribe(recipient: Recipient, topic: str) -> tuple[RecipientTopic, bool]:
    """Subscribe the user to a topic: the subscription, and whether it is new. Idempotent. Raises
    TooManyTopics when the user has MAX_TOPICS_PER_USER topics already."""
    subscription = RecipientTopic.objects.filter(recipient=recipient, topic=topic).first()
    if subscription is not None:
        return subscription, False
    if RecipientTopic.objects.filter(recipient=recipient).count() >= MAX_TOPICS_PER_USER:
        raise TooManyTopics()
    # A concurrent subscribe of the same topic inserts first: ours is ignored and we read back theirs.
    RecipientTopic.objects.bulk_create([RecipientTopic(recipient=recipient, topic=topic)], ignore_conflicts=True)
    return RecipientTopic.objects.get(recipient=recipient, topic=topic), True


def topic_unsubscribe(recipient: Recipient, topic: str) -> bool:
    """Remove the user's subscription to a topic; False when there was none."""
    deleted, _ = RecipientTopic.objects.filter(recipient=recipient, topic=topic).delete()
    return deleted > 0


def device_register(recipient: Recipient, platform: str, token: str) -> tuple[Device, bool]:
    """Register or refresh a token. Idempotent on the token; a token seen on another user moves to this
    one (the phone changed hands or the app's login changed); a deactivated token is reactivated, since
    the app only re-registers a token the OS handed it again. The user's last_seen_at becomes now."""
    now = timezone.now()
    device, created = Device.objects.update_or_create(
        token=token,
        defaults={
            "recipient": recipient, "platform": platform, "active": True, "last_seen_at": now,
            "deactivated_at": None, "deactivated_reason": "",
        },
    )
    # An app registers (or refreshes) its token when the user opens it: the user was seen now, which is
    # what a campaign's {"field": "last_seen_at", ...} filter reads.
    Recipient.objects.filter(pk=recipient.pk).update(last_seen_at=now)
    recipient.last_seen_at = now
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


def recipient_unsubscribe(recipient_id: int, category: str, *, source: str, channel: str = "email",
                          type_key: str = "", notification=None) -> Unsubscription | None:
    """Opt a user out of `category` (a type's category, or a type key) on `channel`, before their next
    send: the route step reads type_preferences in the same query that loads the recipient. Idempotent:
    an opt-out already in place records nothing and returns None; otherwise returns the new record."""
    with transaction.atomic():
        recipient = Recipient.objects.select_for_update().get(id=recipient_id)
        choices = recipient.type_preferences.get(category)
        if isinstance(choices, dict) and choices.get(channel) is False:
            return None
        preferences = dict(recipient.type_preferences)
        preferences[category] = {**(choices if isinstance(choices, dict) else {}), channel: False}
        # A type-level "yes" would win over the category's "no" (pipeline/preferences.py): an unsubscribe
        # from the category ends those too.
        for key in NotificationType.objects.filter(category=category).values_list("key", flat=True):
            if isinstance(preferences.get(key), dict) and preferences[key].get(channel) is True:
                preferences[key] = {name: on for name, on in preferences[key].items() if name != channel}
        recipient.type_preferences = preferences
        recipient.save(update_fields=["type_preferences", "updated_at"])
        unsubscription = Unsubscription.objects.create(recipient=recipient, category=category, channel=channel,
                                                       type_key=type_key, notification=notification, source=source)
        producer_event_unsubscribed(unsubscription)  # the producer's webhook hears of it (idempotent)
        return unsubscription
