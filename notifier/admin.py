from django.contrib import admin

from notifier import models


@admin.register(models.Producer)
class ProducerAdmin(admin.ModelAdmin):
    list_display = ["name", "key_hint", "scopes", "is_active", "created_at"]
    readonly_fields = ["key_hash", "key_hint"]


@admin.register(models.Recipient)
class RecipientAdmin(admin.ModelAdmin):
    list_display = ["user_id", "email", "phone", "timezone", "language", "sms_opted_out_at"]
    search_fields = ["user_id", "email", "phone"]


@admin.register(models.Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["recipient", "platform", "token", "active", "deactivated_reason", "last_seen_at"]
    list_filter = ["platform", "active"]
    search_fields = ["token", "recipient__user_id"]
    raw_id_fields = ["recipient"]


class TemplateInline(admin.StackedInline):
    model = models.Template
    extra = 0


@admin.register(models.NotificationType)
class NotificationTypeAdmin(admin.ModelAdmin):
    list_display = ["key", "category", "default_priority", "default_channels"]
    search_fields = ["key", "name"]
    inlines = [TemplateInline]


@admin.register(models.Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ["type", "channel", "language", "version", "active", "created_at"]
    list_filter = ["channel", "language", "active"]


class DeliveryInline(admin.TabularInline):
    model = models.Delivery
    extra = 0
    can_delete = False
    fields = ["channel", "target", "provider", "status", "attempts", "last_error", "sent_at"]
    readonly_fields = fields


@admin.register(models.Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "recipient", "status", "priority", "created_at"]
    list_filter = ["status", "priority"]
    search_fields = ["=id", "recipient__user_id", "idempotency_key"]
    raw_id_fields = ["recipient", "producer"]
    readonly_fields = ["decisions", "routed_at", "completed_at"]
    inlines = [DeliveryInline]


@admin.register(models.Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "notification_id", "channel", "provider", "status", "attempts", "next_attempt_at"]
    list_filter = ["channel", "status", "provider"]
    search_fields = ["=notification__id", "target", "provider_message_id"]
    raw_id_fields = ["notification", "device", "template"]


@admin.register(models.InboxItem)
class InboxItemAdmin(admin.ModelAdmin):
    list_display = ["recipient", "title", "read_at", "created_at"]
    search_fields = ["recipient__user_id"]
    raw_id_fields = ["recipient", "notification"]


@admin.register(models.SandboxMessage)
class SandboxMessageAdmin(admin.ModelAdmin):
    list_display = ["created_at", "channel", "user_id", "to", "notification_id"]
    list_filter = ["channel"]
    search_fields = ["user_id", "to", "=notification_id"]
    readonly_fields = ["channel", "user_id", "to", "notification_id", "delivery_id", "message"]
