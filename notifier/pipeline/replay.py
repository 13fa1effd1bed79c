"""Replay dead letters: a new delivery of the same notification, queued now, that links to the dead one.

- The dead row stays as history (status `dead`, its attempts); the replay names it in `replayed_from`, and
  the dead row reads it back as `replayed_as`. A dead letter is replayed at most once: replayed_from is
  unique, and a second request answers with the first replay. A replay that dies in turn is a dead letter
  of its own, replayed the same way.
- A replay is rendered afresh, with the channel's active template for the recipient's language and the
  notification's data: an operator who fixed a template after the failures replays with the fix. On the
  dead letter's own channel it goes to the same target, if the recipient can still be reached there; on
  another channel, to the recipient's target on that channel (push: the most recently registered active
  device).
- The user's preferences still apply (a channel they turned off since is refused); quiet hours and rate
  limits do not: an operator's replay is sent now, at the notification's priority.
- The notification goes back to `processing` until its replays finish, and is closed again by the deliver
  step (dispatch.notifications_refresh_status), where a replayed dead letter no longer counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from notifier.channels import CHANNELS
from notifier.channels.email import email_suppressions_load
from notifier.models import Delivery, DeliveryStatus, Notification, NotificationStatus
from notifier.pipeline.deliveries import active_devices
from notifier.pipeline.render import active_templates
from notifier.pipeline.route import _route_channel
from notifier.pipeline.wake import wake_deliver
from notifier.selectors import dead_letters

# A bulk replay takes at most this many dead letters, newest first; `remaining` says how many more match.
BULK_REPLAY_MAX = 10_000

# A notification in one of these is over for good: its dead letters are not replayed.
_NOT_REPLAYABLE = {
    NotificationStatus.CANCELLED: "the notification was cancelled",
    NotificationStatus.EXPIRED: "the notification expired",
}


class NotReplayable(Exception):
    """This dead letter cannot be replayed as asked; `field` is the request field at fault ("channel")."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass
class Replay:
    delivery: Delivery  # the replay
    created: bool  # False: the dead letter had been replayed before, and this is that replay


@dataclass
class BulkReplay:
    replayed: int = 0
    refused: dict[int, NotReplayable] = field(default_factory=dict)  # dead letter id → why it was not replayed
    remaining: int = 0  # dead letters that match and were beyond this call's BULK_REPLAY_MAX


def dead_letter_replay(producer, delivery_id: int, channel: str | None = None) -> Replay | None:
    """Replay one of this producer's dead letters (None: any producer's, for the admin) on its channel or
    on `channel`. None when there is no such dead letter; raises NotReplayable with the reason when it
    cannot be replayed. The dead row is locked first, so two concurrent requests make one replay and both
    answer with it."""
    now = timezone.now()
    with transaction.atomic():
        dead = (
            dead_letters(producer, ids=[delivery_id]).select_for_update(of=("self",))
            .select_related(None).select_related("notification__type", "notification__recipient")
            .prefetch_related(None).first()
        )
        if dead is None:
            return None
        # Looked up after the lock, in a statement of its own: it sees a replay committed while we waited.
        earlier = Delivery.objects.filter(replayed_from=dead).first()
        if earlier is not None:
            return Replay(earlier, created=False)
        replays, refused = replays_build([dead], channel, now)
        if refused:
            raise refused[dead.id]
        replays[0].save()
        _replays_start(replays)
    return Replay(replays[0], created=True)


def dead_letters_replay(producer, filters: dict, channel: str | None = None) -> BulkReplay:
    """Replay up to BULK_REPLAY_MAX of this producer's (None: any producer's) dead letters that match
    `filters` (the keyword arguments of selectors.dead_letters) and have not been replayed, newest first.
    A constant number of queries, whatever their number: one to count, one to lock and load, two for
    devices and templates, one insert, one update of the notifications."""
    now = timezone.now()
    pending = dead_letters(producer, **filters).filter(replayed_as=None).prefetch_related(None)
    with transaction.atomic():
        matching = pending.count()
        rows = list(pending.select_for_update(of=("self",)).order_by("-failed_at", "-id")[:BULK_REPLAY_MAX])
        replays, refused = replays_build(rows, channel, now)
        # ignore_conflicts: a single replay that committed while this one waited for its lock already made
        # that dead letter's one replay (replayed_from is unique).
        Delivery.objects.bulk_create(replays, ignore_conflicts=True)
        _replays_start(replays)
    return BulkReplay(replayed=len(replays), refused=refused, remaining=matching - len(rows))


def replays_build(dead_rows: list[Delivery], channel: str | None, now) -> tuple[list[Delivery], dict]:
    """The unsaved replays of some dead letters (their notification, type and recipient loaded), on their
    own channel or on `channel`, and why each of the others cannot be replayed. Two queries, three with email."""
    devices = active_devices(d.notification.recipient_id for d in dead_rows)
    templates = active_templates(d.notification.type_id for d in dead_rows)
    email_suppressions_load([d.notification.recipient for d in dead_rows if (channel or d.channel) == "email"])
    replays, refused = [], {}
    for dead in dead_rows:
        try:
            replays.append(_replay_build(dead, channel or dead.channel, devices, templates, now))
        except NotReplayable as error:
            refused[dead.id] = error
    return replays, refused


def _replay_build(dead: Delivery, channel_name: str, devices, templates: dict, now) -> Delivery:
    notification = dead.notification
    recipient = notification.recipient
    if notification.status in _NOT_REPLAYABLE:
        raise NotReplayable("delivery_id", _NOT_REPLAYABLE[notification.status])
    if notification.expires_at and notification.expires_at <= now:
        raise NotReplayable("delivery_id", f"the notification expired at {notification.expires_at.isoformat()}")
    if channel_name not in CHANNELS:
        raise NotReplayable("channel", f"unknown channel {channel_name!r}; known channels: {', '.join(CHANNELS)}")
    # The route step's rules for one channel (preferences, target, template, render), without quiet hours
    # or a digest: an operator's replay goes now.
    deliveries, decision = _route_channel(notification, channel_name, devices[recipient.id], templates,
                                          release_at=None, now=now, digests=False)
    if decision["decision"] == "suppressed":
        raise NotReplayable("channel", f"the user's preferences exclude {channel_name}: {decision['reason']}")
    if decision["decision"] == "failed":
        raise NotReplayable("channel", f"the {channel_name} template does not render: {decision['reason']}")
    if not deliveries:
        raise NotReplayable("channel", f"cannot reach the user on {channel_name}: {decision['reason']}")
    if channel_name == dead.channel:
        deliveries = [delivery for delivery in deliveries if delivery.target == dead.target]
        if not deliveries:
            raise NotReplayable("channel", f"the dead letter's target is no longer reachable on {channel_name}")
    # Push on another channel: the newest device (active_devices lists them in the order they were registered).
    replay = deliveries[-1]
    replay.replayed_from = dead
    return replay


def _replays_start(replays: list[Delivery]) -> None:
    """Reopen the replays' notifications and wake their deliver queues once the replays are committed."""
    if not replays:
        return
    Notification.objects.filter(id__in={r.notification_id for r in replays}).exclude(
        status=NotificationStatus.PROCESSING
    ).update(status=NotificationStatus.PROCESSING, completed_at=None)
    queues = {(r.channel, r.priority) for r in replays if r.status == DeliveryStatus.QUEUED}
    transaction.on_commit(lambda: [wake_deliver(channel, priority) for channel, priority in queues], robust=True)
