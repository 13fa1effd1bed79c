from django.db import models
from django.db.models import Q

from .choices import AttemptOutcome, Channel, DeliveryStatus, EventSource, Priority
from .fields import JSONField


class Delivery(models.Model):
    """One notification on one channel to one target (a device token, an address, a number, an inbox).

    The row is the work item: deliver tasks claim queued rows whose next_attempt_at has come, so retries
    and long waits live here, not in Celery countdowns.
    """

    notification = models.ForeignKey("notifier.Notification", on_delete=models.CASCADE, related_name="deliveries")
    # Copied from the notification when the row is made (pipeline/deliveries.py, deliveries_build), so that
    # GET /api/v1/stats reads one table: on 10,000,000 rows a join to notifications for the window, the
    # producer and the type costs more than the aggregation itself (BENCHMARKS.md, "Stats query").
    # Notification.due_at: when it was accepted, or came due if it was scheduled; where accept → provider
    # latency starts and what the stats window selects on.
    notification_due_at = models.DateTimeField()
    producer = models.ForeignKey("notifier.Producer", on_delete=models.PROTECT, related_name="+", db_index=False)
    type = models.ForeignKey("notifier.NotificationType", on_delete=models.PROTECT, related_name="+",
                             db_index=False)
    # Notification.campaign, copied likewise: a campaign's counters and its pause read the deliveries alone.
    campaign = models.ForeignKey("notifier.Campaign", null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="+", db_index=False)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    priority = models.CharField(max_length=8, choices=Priority.choices)
    target = models.CharField(max_length=512)
    device = models.ForeignKey("notifier.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # PROTECT: a delivery keeps the version that rendered it; a template version is never deleted under it.
    template = models.ForeignKey("notifier.Template", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # The rendered message: subject, title, body, html_body, action_url, data.
    content = JSONField(default=dict)
    provider = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Why a delivery is held or suppressed ("held for quiet hours until 07:00 Asia/Karachi").
    status_reason = models.CharField(max_length=255, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # When the provider, the pixel, the click redirect or the app first reported each (pipeline/status.py):
    # what the stats read, so they need no scan of the events.
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    # A replay of a dead letter (pipeline/replay.py) links to it; the dead row stays as history and reads its
    # replay as `replayed_as`. One-to-one: a dead letter is replayed at most once, however often it is asked.
    replayed_from = models.OneToOneField("self", null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="replayed_as")

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            # A replay goes to the same notification × channel × target as its dead letter: it is unique by
            # replayed_from instead.
            models.UniqueConstraint(fields=["notification", "channel", "target"], condition=Q(replayed_from=None),
                                    name="delivery_once_per_target"),
        ]
        indexes = [
            models.Index(
                fields=["channel", "priority", "next_attempt_at"],
                condition=Q(status="queued"),
                name="delivery_due",
            ),
            models.Index(fields=["claimed_at"], condition=Q(status="sending"), name="delivery_claimed"),
            # Held rows are released when next_attempt_at comes (pipeline/holds.py).
            models.Index(fields=["next_attempt_at"], condition=Q(status="held"), name="delivery_held"),
            models.Index(fields=["claim_token"], condition=Q(claim_token__isnull=False), name="delivery_claim"),
            # Status callbacks name a delivery by the provider's message id (webhooks/twilio.py).
            models.Index(fields=["provider_message_id"], name="delivery_provider_msg"),
            # The dead-letter listing, newest first (selectors.dead_letters).
            models.Index(fields=["-failed_at", "-id"], condition=Q(status="dead"), name="delivery_dead"),
            # The stats window (notifier/stats.py). A B-tree, not a BRIN: status updates move row versions
            # to whatever page has room, which blurs a BRIN's page ranges until it reads most of the table.
            models.Index(fields=["notification_due_at"], name="delivery_due_at"),
            # A campaign's counters (notifier/campaigns/counts.py) and its stop: only campaign rows are in it.
            models.Index(fields=["campaign", "status"], condition=Q(campaign__isnull=False), name="delivery_campaign"),
        ]

    def __str__(self):
        return f"{self.channel} → {self.target} ({self.status})"

    def save(self, *args, **kwargs):
        # deliveries_build sets the copies; a row made one at a time elsewhere (a test, a shell) gets them
        # here. bulk_create does not call save(): its rows come from deliveries_build.
        if self.notification_due_at is None or self.producer_id is None or self.type_id is None:
            self.notification_due_at = self.notification.due_at
            self.producer_id = self.notification.producer_id
            self.type_id = self.notification.type_id
            self.campaign_id = self.notification.campaign_id
        super().save(*args, **kwargs)


class DeadLetter(Delivery):
    """The deliveries that went dead, for the admin's Dead letters view (a proxy: the same rows)."""

    class Meta:
        proxy = True
        verbose_name = "dead letter"


class DeliveryAttempt(models.Model):
    """One attempt of one delivery and how it ended: the provider's answer, or the worker lost holding it.
    Written with the outcome (pipeline/dispatch.py, outcomes_record) and by the sweeper for lost workers."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_history",
                                 db_index=False)  # attempt_delivery leads with it
    number = models.PositiveIntegerField()  # Delivery.attempts when it was made: 1 for the first
    provider = models.CharField(max_length=32, blank=True)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    provider_code = models.CharField(max_length=64, blank=True)  # ProviderError.code: "Unregistered", "21610"
    message = models.TextField(blank=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["delivery", "number"], name="attempt_delivery")]

    def __str__(self):
        return f"attempt {self.number}: {self.outcome}"


class DeliveryEvent(models.Model):
    """One status change of one delivery, or a provider's later word that changed nothing (a `delivered`
    after `clicked`): the delivery's history. Written only by notifier/pipeline/status.py."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="events",
                                 db_index=False)  # event_delivery leads with it
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    # The status the delivery had before; equal to `status`'s predecessor only when the change applied.
    previous_status = models.CharField(max_length=16, blank=True)
    applied = models.BooleanField(default=True, help_text="False: recorded as history, the status stayed.")
    source = models.CharField(max_length=16, choices=EventSource.choices)
    at = models.DateTimeField(help_text="When it happened, by the reporter's clock where it gives one.")
    payload = JSONField(null=True, blank=True, help_text="The provider's event, as received.")

    class Meta:
        indexes = [models.Index(fields=["delivery", "at"], name="event_delivery")]

    def __str__(self):
        return f"{self.status} ({self.source})"


class PendingProviderEvent(models.Model):
    """A provider's report that beat the worker still recording the send: about a message id no delivery
    carries yet (Twilio answers the send, then calls back; the two race), or about a delivery still
    `sending` (SendGrid's webhook names our delivery id). Applied when the worker records the send
    (pipeline/status.py, pending_events_release); purged by the sweeper after
    NOTIFIER_PENDING_EVENT_RETENTION_SECONDS if no delivery ever claims it."""

    # Kept by the delivery when the report names it (SendGrid's custom args) but its worker has not recorded
    # the send yet; else by the provider's message id.
    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=32, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    source = models.CharField(max_length=16, choices=EventSource.choices)
    at = models.DateTimeField()
    payload = JSONField(null=True, blank=True)
    fields = JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["provider_message_id"], name="pending_event_message")]

    def __str__(self):
        return f"{self.provider} {self.provider_message_id}: {self.status}"
