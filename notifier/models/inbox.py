from django.db import models
from django.db.models import Q
from django.utils.text import Truncator

from .fields import JSONField


class InboxItem(models.Model):
    """A notification as the user sees it in the app's inbox."""

    recipient = models.ForeignKey("notifier.Recipient", on_delete=models.CASCADE, related_name="inbox",
                                  db_index=False)  # inbox_page leads with it
    notification = models.OneToOneField("notifier.Notification", on_delete=models.CASCADE, related_name="inbox_item")
    title = models.CharField(max_length=255, blank=True)
    body = models.TextField(blank=True)
    action_url = models.CharField(max_length=1000, blank=True)
    data = JSONField(default=dict, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The inbox page: newest first, keyset-paginated on (created_at, id), O(page) at any table size.
            models.Index(fields=["recipient", "-created_at", "-id"], name="inbox_page"),
            # The unread badge: a range scan of this user's unread entries only, capped (see selectors).
            models.Index(fields=["recipient"], condition=Q(read_at__isnull=True, archived_at__isnull=True),
                         name="inbox_unread"),
            # Retention: the purge deletes the oldest rows in batches.
            models.Index(fields=["created_at"], name="inbox_created"),
        ]

    def __str__(self):
        return self.title or Truncator(self.body).chars(60) or f"inbox item {self.pk}"

