from django.db import models


class InboxItem(models.Model):
    """A notification as the user sees it in the app's inbox."""

    recipient = models.ForeignKey("notifier.Recipient", on_delete=models.CASCADE, related_name="inbox")
    notification = models.OneToOneField("notifier.Notification", on_delete=models.CASCADE, related_name="inbox_item")
    title = models.CharField(max_length=255, blank=True)
    body = models.TextField(blank=True)
    action_url = models.CharField(max_length=1000, blank=True)
    data = models.JSONField(default=dict, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["recipient", "-created_at"], name="inbox_newest_first")]

