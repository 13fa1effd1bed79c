"""Django admin: every model, with the columns, filters and searches an operator needs, and the actions
they use (send a test, deactivate a device, resend, rotate a producer key, close a provider's circuit, pause /
resume / cancel a campaign, create one after its dry run).
Rows whose edits would rewrite history (notifications, deliveries, inbox items, digests, idempotency
keys) are read-only and cannot be deleted; editing a template publishes a new version, and versions are
never deleted. The work behind the actions lives in notifier/admin_tools.py and notifier/services.py."""
import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import Lower
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError

from notifier import admin_tools, models, services
from notifier.api.preferences import preferences_validate
from notifier.api.errors import flatten_errors
from notifier.api.serializers import NotificationTypeSerializer, contact_errors
from notifier.campaigns import dry_run
from notifier.campaigns.service import (
    DELIVERY_COUNTERS,
    CampaignMoveRefused,
    campaign_build,
    campaign_cancel,
    campaign_create,
    campaign_pause,
    campaign_progress,
    campaign_resume,
    campaigns_progress,
)
from notifier.channels.email import email_suppression_of
from notifier.inbox_cache import inbox_changed_on_commit, inbox_recipient_renamed
from notifier.models.producers import SCOPE_SEND, SCOPES, scopes_ordered
from notifier.pipeline.accept import request_fingerprint
from notifier.pipeline.render import template_problems
from notifier.pipeline.cancel import notifications_cancel
from notifier.pipeline.replay import dead_letters_replay
from notifier.producer_webhooks import event_body, producer_events_replay
from notifier.providers.circuit import circuit_close, circuit_states
from notifier.providers.registry import configured_provider_names
from notifier.validation import data_size_problem, input_problem, validate_user_id


class ReadOnlyAdmin(admin.ModelAdmin):
    """For rows that are history: viewable, never added, edited or deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CheckedInputForm(forms.ModelForm):
    """Every admin form takes its text and JSON through the API's one input validator (notifier/validation.py):
    a NUL character or a document nested too deep is an error on its field, not a 500 from PostgreSQL."""

    def clean(self):
        cleaned = super().clean()
        for name, value in list(cleaned.items()):
            if problem := input_problem(value):
                self.add_error(name, problem)
        return cleaned


class ProducerForm(CheckedInputForm):
    """Scopes as checkboxes, one per scope with what it allows; a new producer starts with "send"."""

    scopes = forms.MultipleChoiceField(
        choices=[(name, f"{name}: {what}") for name, what in SCOPES.items()], widget=forms.CheckboxSelectMultiple,
        required=False, initial=[SCOPE_SEND], help_text="What the key may do; each API endpoint needs one scope.",
    )

    class Meta:
        model = models.Producer
        exclude = ["key_hash"]

    def clean_scopes(self):
        return scopes_ordered(self.cleaned_data["scopes"])


@admin.register(models.Producer)
class ProducerAdmin(admin.ModelAdmin):
    form = ProducerForm
    list_display = ["name", "key_hint", "scopes", "is_active", "webhook_url", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "key_hint"]
    # The webhook secret is generated with the URL and shown here: the producer needs it to verify events.
    readonly_fields = ["key_hint", "created_at", "webhook_secret", "webhook_paused_until"]
    exclude = ["key_hash"]
    actions = ["rotate_keys", "rotate_webhook_secrets"]

    def save_model(self, request, obj, form, change):
        if not change:
            key = obj.rotate_key()
            obj.save()
            self._show_key_once(request, obj, key)
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Rotate the key (the old key stops working; the new one is shown once)")
    def rotate_keys(self, request, queryset):
        for producer in queryset:
            key = producer.rotate_key()
            producer.save(update_fields=["key_hash", "key_hint"])
            self._show_key_once(request, producer, key)

    @admin.action(description="Rotate the webhook secret (events are signed with the new one at once)")
    def rotate_webhook_secrets(self, request, queryset):
        for producer in queryset:
            producer.rotate_webhook_secret()
            producer.save(update_fields=["webhook_secret"])
            messages.warning(request, format_html("New webhook secret for <b>{}</b>: <code>{}</code>",
                                                  producer.name, producer.webhook_secret))

    def _show_key_once(self, request, producer, key):
        messages.warning(request, format_html(
            "New key for <b>{}</b>: <code>{}</code> — copy it now, it is stored hashed and will not be shown again.",
            producer.name, key,
        ))


def _json_objects_default_to_empty(form, names) -> None:
    # An emptied JSON box arrives as None, which the non-null column would refuse at save.
    for name in names:
        if name in form.cleaned_data and form.cleaned_data[name] is None:
            form.cleaned_data[name] = {}


class RecipientForm(CheckedInputForm):
    """The admin's recipient page checks what the API checks (contact fields, and the preferences
    document of /notification-preferences), so the route step never meets a value it cannot read."""

    class Meta:
        model = models.Recipient
        fields = "__all__"

    # Where each field of a preferences document lives on this form.
    PREFERENCE_FIELDS = {"channels": "channel_preferences", "types": "type_preferences",
                         "quiet_hours": "quiet_hours_start", "quiet_hours.start": "quiet_hours_start",
                         "quiet_hours.end": "quiet_hours_end", "marketing_opt_in": "marketing_opt_in",
                         "digest": "digest"}

    def clean(self):
        cleaned = super().clean()
        _json_objects_default_to_empty(self, ["attributes", "channel_preferences", "type_preferences"])
        contact = {name: cleaned[name] for name in ("email", "phone", "timezone", "language") if name in cleaned}
        for name, problem in contact_errors(contact).items():
            self.add_error(name, problem)
        if "attributes" in cleaned and not isinstance(cleaned["attributes"], dict):
            self.add_error("attributes", "Must be an object.")

        document = {name: cleaned[field] for name, field in (("channels", "channel_preferences"),
                                                             ("types", "type_preferences"),
                                                             ("marketing_opt_in", "marketing_opt_in"),
                                                             ("digest", "digest")) if field in cleaned}
        start, end = cleaned.get("quiet_hours_start"), cleaned.get("quiet_hours_end")
        if (start is None) != (end is None):
            self.add_error("quiet_hours_end" if end is None else "quiet_hours_start",
                           "Set both ends of the quiet hours, or neither.")
        elif start is not None:
            document["quiet_hours"] = {"start": f"{start:%H:%M}", "end": f"{end:%H:%M}"}
        try:
            preferences_validate(document, partial=True)
        except ValidationError as error:
            for field_path, problems in error.detail.items():
                field = (self.PREFERENCE_FIELDS.get(field_path)
                         or self.PREFERENCE_FIELDS.get(field_path.split(".")[0]))
                for problem in problems:
                    self.add_error(field, f"{field_path}: {problem}")
        return cleaned


UNSUBSCRIPTIONS_SHOWN = 10


class RecipientTopicForm(CheckedInputForm):
    class Meta:
        model = models.RecipientTopic
        fields = ["topic"]


class RecipientTopicInline(admin.TabularInline):
    """The user's topics (what a campaign's {"topic": ...} segment reaches): added and removed here as
    with PUT / DELETE /api/v1/users/{user_id}/topics/{topic}; the topic alphabet is the model field's."""

    model = models.RecipientTopic
    form = RecipientTopicForm
    extra = 0
    fields = ["topic", "created_at"]
    readonly_fields = ["created_at"]
    ordering = ["topic"]


@admin.register(models.Recipient)
class RecipientAdmin(admin.ModelAdmin):
    form = RecipientForm
    inlines = [RecipientTopicInline]
    list_display = ["user_id", "email", "email_suppressed", "phone", "timezone", "language", "sms_opted_out_at",
                    "created_at"]
    list_filter = ["language"]
    search_fields = ["=user_id", "email", "phone"]
    readonly_fields = ["email_suppression", "unsubscriptions"]
    actions = ["email_suppressions_clear"]

    def get_queryset(self, request):
        # One subquery for the whole page, not one query per row.
        return super().get_queryset(request).annotate(_email_suppressed=Exists(
            models.EmailSuppression.objects.filter(address=Lower(OuterRef("email")))))

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "user_id" in form.changed_data:
            old_user_id, recipient_id = form.initial["user_id"], obj.pk
            transaction.on_commit(lambda: inbox_recipient_renamed(old_user_id, recipient_id), robust=True)
            inbox_changed_on_commit([obj.user_id])

    @admin.display(boolean=True, description="email suppressed", ordering="_email_suppressed")
    def email_suppressed(self, recipient):
        return recipient._email_suppressed

    @admin.display(description="email suppression")
    def email_suppression(self, recipient):
        """Why no email goes to this address, if SendGrid reported it dead, with the way to clear it."""
        suppression = email_suppression_of(recipient) if recipient.pk else None
        if suppression is None:
            return "none: email is sent to this address"
        clear_url = reverse("admin:notifier_emailsuppression_delete", args=[suppression.pk])
        return format_html('{} ({}) — <a href="{}">clear it</a> to send email to this address again',
                           suppression.describe(), suppression.detail or suppression.source, clear_url)

    @admin.action(description="Clear the email suppression of the selected recipients (email is sent again)")
    def email_suppressions_clear(self, request, queryset):
        addresses = {email.lower() for email in queryset.exclude(email="").values_list("email", flat=True)}
        count, _ = models.EmailSuppression.objects.filter(address__in=addresses).delete()
        messages.success(request, f"Cleared {count} email suppression(s).")

    # A read-only list, not an inline: the recipient's form posts stay what they were.
    @admin.display(description="unsubscriptions")
    def unsubscriptions(self, recipient):
        """Who unsubscribed from what and when, newest first: the history behind the opt-outs in the type
        preferences above (which are what the route step reads)."""
        if recipient.pk is None:
            return "-"
        rows = list(recipient.unsubscriptions.order_by("-created_at")[:UNSUBSCRIPTIONS_SHOWN])
        if not rows:
            return "none"
        listing = format_html_join(
            "", "<li>{}: {} on {} ({}{})</li>",
            ((row.created_at.strftime("%Y-%m-%d %H:%M UTC"), row.category, row.channel, row.source,
              f", from {row.type_key}" if row.type_key else "") for row in rows),
        )
        everything = reverse("admin:notifier_unsubscription_changelist") + f"?recipient__id__exact={recipient.pk}"
        return format_html('<ul style="margin:0;padding-left:1.2em;">{}</ul><a href="{}">All unsubscriptions</a>',
                           listing, everything)


class EmailSuppressionForm(CheckedInputForm):
    class Meta:
        model = models.EmailSuppression
        fields = ["address", "reason", "detail"]

    def clean_address(self):
        # Lower-cased before the unique check, as the model stores it.
        return self.cleaned_data["address"].strip().lower()


@admin.register(models.EmailSuppression)
class EmailSuppressionAdmin(admin.ModelAdmin):
    """The addresses no email goes to (SendGrid's hard bounces and dead-address drops). Deleting one clears
    it; adding one suppresses an address by hand."""

    form = EmailSuppressionForm
    list_display = ["address", "reason", "source", "detail", "created_at", "delivery"]
    list_filter = ["reason", "source"]
    search_fields = ["address"]
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        # A suppression is the provider's report: cleared (deleted), never rewritten.
        return ["address", "reason", "source", "detail", "delivery", "created_at"] if obj else ["source"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.source = f"admin ({request.user})"[:32]
        super().save_model(request, obj, form, change)


@admin.register(models.Unsubscription)
class UnsubscriptionAdmin(ReadOnlyAdmin):
    """Every opt-out and where it came from: the one-click link of an email, SendGrid's unsubscribe and
    spam-report events, an operator. To subscribe a user again, edit their type preferences."""

    list_display = ["created_at", "recipient", "category", "channel", "source", "type_key", "notification_id"]
    list_filter = ["category", "channel", "source", "created_at"]
    search_fields = ["=recipient__user_id", "recipient__email", "type_key", "=notification__id"]
    list_select_related = ["recipient"]
    date_hierarchy = "created_at"
    fields = ["recipient", "category", "channel", "type_key", "source", "notification", "created_at"]
    readonly_fields = fields


@admin.register(models.Device)
class DeviceAdmin(admin.ModelAdmin):
    form = CheckedInputForm
    list_display = ["recipient", "platform", "short_token", "active", "deactivated_reason", "last_seen_at"]
    list_filter = ["platform", "active"]
    search_fields = ["token", "=recipient__user_id"]
    raw_id_fields = ["recipient"]
    list_select_related = ["recipient"]
    actions = ["deactivate"]

    @admin.display(description="token")
    def short_token(self, device):
        return f"{device.token[:16]}…" if len(device.token) > 16 else device.token

    @admin.action(description="Deactivate the selected devices (never sent to again until re-registered)")
    def deactivate(self, request, queryset):
        count = queryset.filter(active=True).update(
            active=False, deactivated_at=timezone.now(), deactivated_reason=f"deactivated in admin by {request.user}"
        )
        messages.success(request, f"Deactivated {count} device(s).")


class TemplateInline(admin.TabularInline):
    """The type's templates, as links: editing happens on the template's own page, which versions it."""

    model = models.Template
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["channel", "language", "version", "active", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class NotificationTypeForm(CheckedInputForm):
    """The admin's type page checks what POST /api/v1/notification-types checks (channels, language,
    variables schema, critical only for transactional types), through the same serializer and the model's
    clean()."""

    class Meta:
        model = models.NotificationType
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        _json_objects_default_to_empty(self, ["variables"])
        if "default_fallback_channels" in cleaned and cleaned["default_fallback_channels"] is None:
            cleaned["default_fallback_channels"] = []  # an emptied box: no fallback (the column is not null)
        data = {name: cleaned[name] for name in NotificationTypeSerializer.Meta.fields if name in cleaned}
        serializer = NotificationTypeSerializer(self.instance if self.instance.pk else None, data=data)
        if not serializer.is_valid():
            for name, problems in serializer.errors.items():
                if name in ("key", "critical") or name in self.errors:
                    continue  # the form checks the key (slug, unique) and its own fields itself, and the
                    # model's clean() says why critical is refused
                for problem in problems:
                    self.add_error(name if name in self.fields else None, str(problem))
        return cleaned


@admin.register(models.NotificationType)
class NotificationTypeAdmin(admin.ModelAdmin):
    form = NotificationTypeForm
    list_display = ["key", "name", "category", "default_priority", "default_channels", "default_fallback_channels",
                    "default_language", "digest_window_seconds", "track_engagement", "template_count"]
    list_filter = ["category", "default_priority", "track_engagement"]
    search_fields = ["key", "name"]
    inlines = [TemplateInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(active_templates=Count("templates", filter=Q(templates__active=True)))

    @admin.display(description="active templates", ordering="active_templates")
    def template_count(self, notification_type):
        return notification_type.active_templates


class TemplateForm(CheckedInputForm):
    class Meta:
        model = models.Template
        fields = ["type", "channel", "language", "subject", "title", "body", "html_body", "action_url", "badge",
                  "sound"]

    def clean(self):
        cleaned = super().clean()
        notification_type = cleaned.get("type") or (self.instance.type if self.instance.pk else None)
        channel = cleaned.get("channel") or self.instance.channel
        for name, problem in template_problems(notification_type, channel, cleaned).items():
            self.add_error(name, problem)
        return cleaned


class SampleDataForm(forms.Form):
    data = forms.CharField(widget=forms.Textarea(attrs={"rows": 6, "cols": 80}), label="Sample data (JSON)")
    user_id = forms.CharField(required=False, label="Send a test to user id", validators=[validate_user_id])

    def clean_data(self):
        try:
            data = json.loads(self.cleaned_data["data"])
        except json.JSONDecodeError as error:
            raise forms.ValidationError(f"Not JSON: {error}")
        if not isinstance(data, dict):
            raise forms.ValidationError("Give a JSON object.")
        if problem := input_problem(data) or data_size_problem(data):
            raise forms.ValidationError(problem)
        return data


@admin.register(models.Template)
class TemplateAdmin(admin.ModelAdmin):
    """Saving a template publishes a new version (the old one stays readable, and deliveries keep pointing
    at the version that rendered them). Each version has a preview, a diff and a test send."""

    form = TemplateForm
    list_display = ["type", "channel", "language", "version", "active", "created_at", "tools"]
    list_filter = ["active", "channel", "language", "type__category"]
    search_fields = ["type__key"]
    list_select_related = ["type"]
    readonly_fields = ["version", "active", "created_at"]
    change_form_template = "admin/notifier/template/change_form.html"

    def has_delete_permission(self, request, obj=None):
        return False  # versions stay: deliveries point at the version that rendered them

    def get_readonly_fields(self, request, obj=None):
        # A version belongs to one type × channel × language: editing it publishes the next version there.
        return [*self.readonly_fields, *(["type", "channel", "language"] if obj else [])]

    def save_model(self, request, obj, form, change):
        if change and not form.has_changed():
            return
        fields = {name: form.cleaned_data[name] if name in form.cleaned_data else getattr(obj, name)
                  for name in TemplateForm.Meta.fields}
        published = services.template_publish(**fields)
        obj.pk, obj.version, obj.active, obj.created_at = published.pk, published.version, True, published.created_at
        messages.info(request, f"Published version {published.version}; earlier versions are kept.")

    @admin.display(description="")
    def tools(self, template):
        return format_html(
            '<a href="{}">preview</a> · <a href="{}">diff</a>',
            reverse("admin:notifier_template_preview", args=[template.pk]),
            reverse("admin:notifier_template_diff", args=[template.pk]),
        )

    def get_urls(self):
        return [
            path("<int:pk>/preview/", self.admin_site.admin_view(self.preview_view), name="notifier_template_preview"),
            path("<int:pk>/diff/", self.admin_site.admin_view(self.diff_view), name="notifier_template_diff"),
            *super().get_urls(),
        ]

    def preview_view(self, request, pk):
        template = get_object_or_404(models.Template.objects.select_related("type"), pk=pk)
        if not self.has_view_permission(request, template):
            raise Http404
        # The sample data and user id of the last test sent from this page, kept so that the page shown after
        # sending (a redirect, so a reload sends nothing twice) previews what was just sent.
        last_sent_key = f"notifier.template_preview.{template.pk}"
        last_sent = request.session.get(last_sent_key)
        data = json.loads(last_sent["data"]) if last_sent else admin_tools.sample_data(template.type)
        initial = last_sent or {"data": json.dumps(data, indent=2, ensure_ascii=False)}
        form = SampleDataForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data["data"]
            if "send_test" in request.POST:
                if not form.cleaned_data["user_id"]:
                    form.add_error("user_id", "Give the user id to send the test to.")
                else:
                    try:
                        notification_id = admin_tools.template_send_test(
                            template, form.cleaned_data["user_id"], data, sent_by=str(request.user))
                    except admin_tools.SendTestError as error:
                        messages.error(request, f"Test not sent: {error}")
                    else:
                        url = reverse("admin:notifier_notification_change", args=[notification_id])
                        request.session[last_sent_key] = {"data": request.POST["data"],
                                                          "user_id": form.cleaned_data["user_id"]}
                        messages.success(request, format_html(
                            'Test of version {} sent to {} on {}: <a href="{}">notification {}</a>.',
                            template.version, form.cleaned_data["user_id"], template.channel, url, notification_id,
                        ))
                        return redirect(request.get_full_path())
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta, "original": template, "title": f"Preview {template}",
            "form": form, "preview": admin_tools.template_preview(template, data),
        }
        return TemplateResponse(request, "admin/notifier/template/preview.html", context)

    def diff_view(self, request, pk):
        template = get_object_or_404(models.Template.objects.select_related("type"), pk=pk)
        if not self.has_view_permission(request, template):
            raise Http404
        versions = list(models.Template.objects.filter(
            type=template.type, channel=template.channel, language=template.language).order_by("-version"))
        others = [v for v in versions if v.pk != template.pk]
        against = admin_tools.diff_partner(template, others, request.GET.get("against"))
        older, newer = sorted([against, template], key=lambda v: v.version) if against else (None, None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta, "original": template, "title": f"Changes in {template}",
            "others": others, "against": against, "older": older, "newer": newer,
            "diffs": admin_tools.template_diff(older, newer) if against else [],
        }
        return TemplateResponse(request, "admin/notifier/template/diff.html", context)


class DeliveryInline(admin.TabularInline):
    model = models.Delivery
    extra = 0
    can_delete = False
    fields = ["channel", "target", "provider", "status", "status_reason", "attempts", "next_attempt_at", "template",
              "last_error", "sent_at", "failed_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(models.Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "recipient", "status", "priority", "producer", "created_at"]
    list_filter = ["status", "priority", "type", "producer"]
    search_fields = ["=id", "=recipient__user_id", "idempotency_key"]
    list_select_related = ["type", "recipient", "producer"]
    date_hierarchy = "created_at"
    fields = ["id", "type", "recipient", "producer", "status", "priority", "channels", "fallback_channels",
              "escalation", "escalate_at", "data", "decision_trail",
              "idempotency_key", "collapse_key", "schedule_at", "expires_at", "created_at", "routed_at",
              "completed_at", "cancelled_at"]
    readonly_fields = fields
    inlines = [DeliveryInline]
    actions = ["resend", "cancel"]

    @admin.display(description="decisions")
    def decision_trail(self, notification):
        if not notification.decisions:
            return "—"
        rows = format_html_join(
            "", "<tr><td>{}</td><td><b>{}</b></td><td>{}</td><td>{}</td></tr>",
            ((d.get("channel", ""), d.get("decision", ""), d.get("reason", ""),
              ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("channel", "decision", "reason")))
             for d in notification.decisions),
        )
        return format_html("<table><tr><th>channel</th><th>decision</th><th>reason</th><th>details</th></tr>{}"
                           "</table>", rows)

    @admin.action(description="Cancel what has not been sent yet (as the producer's cancel does)")
    def cancel(self, request, queryset):
        answers = notifications_cancel(Q(id__in=list(queryset.values_list("id", flat=True)[:1000])),
                                       source=models.EventSource.ADMIN)
        cancelled = sum(len(answer["cancelled"]) for answer in answers)
        messages.success(request, f"Cancelled {cancelled} waiting deliveries of {len(answers)} notifications "
                                  "(what a worker holds finishes its attempt and is never sent again).")

    @admin.action(description="Resend as a new notification (same type, recipient, data and channels)")
    def resend(self, request, queryset):
        for notification in queryset.select_related("type", "recipient"):
            new_id = admin_tools.notification_resend(notification)
            messages.success(request, format_html(
                'Resent {} as <a href="{}">{}</a>.', notification.id,
                reverse("admin:notifier_notification_change", args=[new_id]), new_id,
            ))


class DeliveryEventInline(admin.TabularInline):
    """A delivery's history: every status change and every later provider report (pipeline/status.py)."""

    model = models.DeliveryEvent
    extra = 0
    can_delete = False
    fields = ["at", "previous_status", "status", "applied", "source", "payload"]
    readonly_fields = fields
    ordering = ["id"]  # as recorded: providers stamp whole seconds, which would sort a report before the send
    verbose_name_plural = "history"

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(models.Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    inlines = [DeliveryEventInline]
    list_display = ["id", "notification_link", "channel", "provider", "status", "attempts", "target",
                    "next_attempt_at", "sent_at"]
    list_filter = ["status", "channel", "provider", "priority"]
    search_fields = ["=notification__id", "=notification__recipient__user_id", "target", "provider_message_id"]
    date_hierarchy = "created_at"

    @admin.display(description="notification")
    def notification_link(self, delivery):
        return format_html('<a href="{}">{}</a>', reverse("admin:notifier_notification_change",
                                                          args=[delivery.notification_id]), delivery.notification_id)

    def changelist_view(self, request, extra_context=None):
        # Each provider's circuit above the deliveries it holds back (notifier/providers/circuit.py).
        circuits = circuit_states(configured_provider_names())
        return super().changelist_view(request, {**(extra_context or {}), "circuits": circuits})

    def get_urls(self):
        return [
            path("circuits/<str:provider>/close/", self.admin_site.admin_view(self.circuit_close_view),
                 name="notifier_circuit_close"),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def circuit_close_view(self, request, provider):
        if not request.user.has_perm("notifier.change_delivery") or provider not in configured_provider_names():
            raise Http404
        circuit_close(provider)
        messages.success(request, f"Closed the circuit of {provider}: its next sends go through.")
        return redirect("admin:notifier_delivery_changelist")


class DeliveryAttemptInline(admin.TabularInline):
    model = models.DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "outcome", "provider", "provider_code", "message", "at"]
    readonly_fields = fields
    ordering = ["number", "id"]
    verbose_name_plural = "attempt history"

    def has_add_permission(self, request, obj=None):
        return False


class ErrorCodeFilter(admin.SimpleListFilter):
    """The provider codes dead letters got, any attempt (selectors.dead_letters' error_code)."""

    title = "error code"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        codes = (models.DeliveryAttempt.objects.filter(delivery__status=models.DeliveryStatus.DEAD)
                 .exclude(provider_code="").values_list("provider_code", flat=True).distinct()
                 .order_by("provider_code")[:50])
        return [(code, code) for code in codes]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(attempt_history__provider_code=self.value()).distinct()
        return queryset


class ReplayChannelForm(forms.Form):
    channel = forms.ChoiceField(choices=models.Channel.choices,
                                help_text="Rendered with this channel's active template for the same notification "
                                          "and data, to the user's target on this channel.")


@admin.register(models.DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    """Deliveries whose retries ran out, with every attempt's error, and replay (pipeline/replay.py)."""

    list_display = ["id", "notification_link", "user", "type", "channel", "provider", "attempts", "target",
                    "failed_at", "last_error", "replay_link"]
    list_filter = ["channel", "provider", ErrorCodeFilter, "notification__type", "failed_at"]
    search_fields = ["=notification__id", "=notification__recipient__user_id", "target"]
    date_hierarchy = "failed_at"
    ordering = ["-failed_at", "-id"]
    fields = ["notification_link", "user", "type", "channel", "priority", "target", "provider", "attempts",
              "last_error", "failed_at", "replay_link", "content"]
    readonly_fields = fields
    inlines = [DeliveryAttemptInline, DeliveryEventInline]
    actions = ["replay", "replay_to_channel"]

    def get_queryset(self, request):
        return (super().get_queryset(request).filter(status=models.DeliveryStatus.DEAD)
                .select_related("notification__type", "notification__recipient", "replayed_as"))

    @admin.display(description="notification")
    def notification_link(self, dead):
        return format_html('<a href="{}">{}</a>', reverse("admin:notifier_notification_change",
                                                          args=[dead.notification_id]), dead.notification_id)

    @admin.display(description="user")
    def user(self, dead):
        return dead.notification.recipient.user_id

    @admin.display(description="type")
    def type(self, dead):
        return dead.notification.type.key

    @admin.display(description="replayed as")
    def replay_link(self, dead):
        replay = getattr(dead, "replayed_as", None)  # a reverse one-to-one raises when there is none
        if replay is None:
            return "—"
        return format_html('<a href="{}">{} ({}, {})</a>', reverse("admin:notifier_delivery_change", args=[replay.id]),
                           replay.id, replay.channel, replay.status)

    @admin.action(description="Replay (same channel and target, rendered with the current template)")
    def replay(self, request, queryset):
        self._replay(request, queryset, None)

    @admin.action(description="Replay to channel …")
    def replay_to_channel(self, request, queryset):
        form = ReplayChannelForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._replay(request, queryset, form.cleaned_data["channel"])
            return None
        return TemplateResponse(request, "admin/notifier/deadletter/replay_to_channel.html", {
            **self.admin_site.each_context(request), "title": "Replay to another channel", "form": form,
            "dead_letters": queryset, "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        })

    def _replay(self, request, queryset, channel):
        ids = list(queryset.values_list("id", flat=True))
        result = dead_letters_replay(None, {"ids": ids}, channel)
        messages.success(request, f"Replayed {result.replayed} dead letter(s)"
                                  f"{f' to {channel}' if channel else ''}; already replayed: "
                                  f"{len(ids) - result.replayed - len(result.refused)}.")
        for delivery_id, refusal in list(result.refused.items())[:20]:
            messages.warning(request, f"Dead letter {delivery_id} was not replayed: {refusal.reason}")


class ReadFilter(admin.SimpleListFilter):
    title = "read"
    parameter_name = "read"

    def lookups(self, request, model_admin):
        return [("no", "unread"), ("yes", "read")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(read_at__isnull=self.value() == "no")
        return queryset


@admin.register(models.InboxItem)
class InboxItemAdmin(ReadOnlyAdmin):
    list_display = ["recipient", "title", "notification_id", "read_at", "archived_at", "created_at"]
    list_filter = [ReadFilter]
    search_fields = ["=recipient__user_id", "=notification__id", "title"]
    list_select_related = ["recipient"]
    date_hierarchy = "created_at"


@admin.register(models.DigestBatch)
class DigestBatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "recipient", "type", "channel", "status", "count", "window_ends_at", "flushed_at"]
    list_filter = ["status", "channel", "type"]
    search_fields = ["=recipient__user_id"]
    list_select_related = ["recipient", "type"]


@admin.register(models.SandboxMessage)
class SandboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "producer", "channel", "user_id", "to", "notification_id"]
    list_filter = ["channel", "producer"]
    search_fields = ["=user_id", "to", "=notification_id"]

    def has_delete_permission(self, request, obj=None):
        return True  # what a sandbox provider would have sent, not a record of what was: clearing it is fine


@admin.register(models.IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    """The answers kept for retried requests (NOTIFIER_IDEMPOTENCY_TTL_HOURS; the sweeper purges them)."""

    list_display = ["key", "producer", "created_at", "request_hash"]
    list_filter = ["producer"]
    search_fields = ["=key"]
    list_select_related = ["producer"]
    date_hierarchy = "created_at"


@admin.register(models.ProducerEvent)
class ProducerEventAdmin(ReadOnlyAdmin):
    """The producer webhooks' outbox (notifier/producer_webhooks.py): every status event, whether it was
    sent, its attempts and last error, and a replay that sends failed or sent events again."""

    list_display = ["id", "producer", "type", "status", "attempts", "created_at", "next_attempt_at", "sent_at",
                    "last_error"]
    list_filter = ["status", "type", "producer", "created_at"]
    search_fields = ["=notification__id", "=delivery__id"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    list_select_related = ["producer"]
    fields = ["id", "producer", "type", "status", "attempts", "created_at", "next_attempt_at", "give_up_at",
              "claimed_at", "sent_at", "last_error", "notification_link", "delivery_link", "body"]
    readonly_fields = fields
    actions = ["replay"]

    @admin.display(description="notification")
    def notification_link(self, event):
        if event.notification_id is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:notifier_notification_change",
                                                          args=[event.notification_id]), event.notification_id)

    @admin.display(description="delivery")
    def delivery_link(self, event):
        if event.delivery_id is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:notifier_delivery_change", args=[event.delivery_id]),
                           event.delivery_id)

    @admin.display(description="body (one of the POSTed events)")
    def body(self, event):
        return format_html("<pre>{}</pre>", json.dumps(event_body(event), indent=2))

    @admin.action(description="Send again now (failed or sent events; same id, so the producer can dedupe)")
    def replay(self, request, queryset):
        selected = queryset.count()  # before the replay: a changelist filtered by status would lose them
        count = producer_events_replay(queryset.filter(
            status__in=[models.ProducerEventStatus.FAILED, models.ProducerEventStatus.SENT]))
        skipped = selected - count
        messages.success(request, f"{count} event(s) will be sent again within seconds"
                                  + (f"; {skipped} still pending, left as they are." if skipped else "."))


CHUNKS_SHOWN = 50


@admin.register(models.CampaignChunk)
class CampaignChunkAdmin(ReadOnlyAdmin):
    """A campaign's chunks, all of them (its page shows the first CHUNKS_SHOWN): what each routed and when."""

    list_display = ["campaign", "number", "status", "recipients", "after_recipient_id", "last_recipient_id",
                    "due_at", "published_at", "done_at", "counts"]
    list_filter = ["status"]
    search_fields = ["=campaign__id", "campaign__name"]
    list_select_related = ["campaign"]
    ordering = ["campaign", "number"]


def _json_field(label, required=False, help_text=""):
    return forms.CharField(label=label, required=required, help_text=help_text,
                           widget=forms.Textarea(attrs={"rows": 3, "cols": 80}))


class CampaignCreateForm(forms.Form):
    """A campaign as POST /api/v1/campaigns takes it, checked by the same serializer (its errors land on the
    field they name). The hidden `dry_run_of` is the fingerprint of the request last dry run from this form:
    "Create and start" creates only what was dry run."""

    name = forms.CharField(max_length=200)
    type = forms.ModelChoiceField(models.NotificationType.objects.order_by("key"), to_field_name="key")
    channels = forms.MultipleChoiceField(choices=models.Channel.choices, required=False,
                                         widget=forms.CheckboxSelectMultiple, help_text="None: the type's default channels.")
    data = _json_field("Data (JSON)", help_text='The template variables, e.g. {"order_id": "W1"}.')
    segment = _json_field("Segment (JSON)", required=True, help_text=(
        '{"user_ids": ["u_1", "u_2"]}, {"topic": "sports"}, {"all": true} or {"filter": {...}}.'))
    schedule_at = forms.DateTimeField(required=False, help_text="UTC, YYYY-MM-DD HH:MM. Empty: start at once.")
    send_window = _json_field("Send window (JSON)", help_text=(
        '{"local_time": "09:00", "timezone_fallback": "UTC"} or {"spread_seconds": 14400}. Empty: none.'))
    max_per_second = forms.IntegerField(required=False, label="Throttle (sends a second)", min_value=1)
    dry_run_of = forms.CharField(required=False, widget=forms.HiddenInput)

    # Where an error the serializer names by its path shows on this form.
    FIELD_OF_PATH = {"throttle": "max_per_second", "idempotency_key": None}

    def request_body(self) -> dict | None:
        """The body POST /api/v1/campaigns would get from this form, or None (with the form's errors) when
        a JSON box does not parse."""
        cleaned = self.cleaned_data
        body = {"name": cleaned["name"], "type": cleaned["type"].key}
        for name in ("data", "segment", "send_window"):
            if not cleaned.get(name, "").strip():
                continue
            try:
                body[name] = json.loads(cleaned[name])
            except json.JSONDecodeError as error:
                self.add_error(name, f"Not JSON: {error}")
        if cleaned.get("channels"):
            body["channels"] = cleaned["channels"]
        if cleaned.get("schedule_at"):
            body["schedule_at"] = cleaned["schedule_at"].isoformat()
        if cleaned.get("max_per_second"):
            body["throttle"] = {"max_per_second": cleaned["max_per_second"]}
        if problem := input_problem(body):
            self.add_error(None, problem)
        return None if self.errors else body

    def spec(self, body: dict):
        """The CampaignSpec of `body`, or None with the serializer's errors on this form's fields."""
        from notifier.api.campaigns import CampaignRequestSerializer

        serializer = CampaignRequestSerializer(data=body)
        if serializer.is_valid():
            return serializer.validated_data["spec"]
        for field_path, problems in flatten_errors(serializer.errors).items():
            top = field_path.split(".")[0].split("[")[0]
            field = self.FIELD_OF_PATH.get(top, top if top in self.fields else None)
            for problem in problems:
                self.add_error(field, f"{field_path}: {problem}")
        return None


@admin.register(models.Campaign)
class CampaignAdmin(admin.ModelAdmin):
    """Campaigns with their live progress. Created here through a dry run first (the add page); afterwards
    read-only, moved only by the pause / resume / cancel actions and buttons (notifier/campaigns/service.py)."""

    list_display = ["name", "status", "progress", "estimated_recipients", "type", "producer", "created_at",
                    "started_at"]
    list_filter = ["status", "type", "producer", "created_at"]
    search_fields = ["=id", "name", "idempotency_key"]
    list_select_related = ["type", "producer"]
    date_hierarchy = "created_at"
    actions = ["pause", "resume", "cancel"]
    fields = ["name", "status", "counters", "producer", "type", "channels", "data", "segment", "schedule_at",
              "send_window", "throttle_per_second", "idempotency_key", "estimated_recipients", "chunks_created",
              "cursor", "fanned_out_at", "created_at", "started_at", "paused_at", "cancelled_at", "completed_at",
              "chunk_list"]
    readonly_fields = fields
    change_form_template = "admin/notifier/campaign/change_form.html"

    def has_change_permission(self, request, obj=None):
        # A campaign's page is read-only; the list's actions (obj None) need the permission.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # its notifications and deliveries point at it

    def get_changelist_instance(self, request):
        # The progress of the whole page in two queries, not two per row.
        changelist = super().get_changelist_instance(request)
        progress = campaigns_progress(changelist.result_list)
        for campaign in changelist.result_list:
            campaign.progress_now = progress[campaign.id]
        return changelist

    @admin.display(description="progress")
    def progress(self, campaign):
        now = campaign.progress_now
        return format_html(
            '<progress value="{}" max="100" style="width:6em"></progress> {}% · targeted {} · sent {} · '
            "failed {} · dead {} · waiting {}",
            now["percent_done"], now["percent_done"], now["targeted"], now["sent"], now["failed"], now["dead"],
            now["waiting"])

    @admin.display(description="counters")
    def counters(self, campaign):
        now = campaign_progress(campaign)
        rows = [(name, now[name]) for name in ("percent_done", "targeted", "held", *DELIVERY_COUNTERS)]
        rows += [(f"eligible: {channel}", count) for channel, count in sorted(now["eligible"].items())]
        rows += [(f"suppressed: {reason}", count) for reason, count in sorted(now["suppressed"].items())]
        rows += [("chunks done", f'{now["chunks"]["done"]} of {now["chunks"]["created"]}')]
        return format_html('<table style="margin:0">{}</table>',
                           format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.display(description="chunks")
    def chunk_list(self, campaign):
        chunks = list(campaign.chunks.order_by("number")[:CHUNKS_SHOWN])
        if not chunks:
            return "none yet"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (c.number, c.status, c.recipients, c.due_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
             c.done_at.strftime("%Y-%m-%d %H:%M:%S UTC") if c.done_at else "—", json.dumps(c.counts))
            for c in chunks))
        everything = reverse("admin:notifier_campaignchunk_changelist") + f"?q={campaign.id}"
        return format_html(
            '<table style="margin:0"><tr><th>#</th><th>status</th><th>recipients</th><th>due</th><th>done</th>'
            '<th>counts</th></tr>{}</table><a href="{}">All {} chunks</a>', rows, everything, campaign.chunks_created)

    @admin.action(description="Pause the selected campaigns (no new send starts)", permissions=["change"])
    def pause(self, request, queryset):
        self._move(request, queryset, campaign_pause, "paused")

    @admin.action(description="Resume the selected campaigns (they go on where they stopped)", permissions=["change"])
    def resume(self, request, queryset):
        self._move(request, queryset, campaign_resume, "resumed")

    @admin.action(description="Cancel the selected campaigns (nothing not yet sent will be)", permissions=["change"])
    def cancel(self, request, queryset):
        self._move(request, queryset, campaign_cancel, "cancelled")

    def _move(self, request, campaigns, move, done: str) -> None:
        moved = 0
        for campaign in campaigns:
            try:
                move(campaign)
            except CampaignMoveRefused as refused:
                messages.warning(request, str(refused))
            else:
                moved += 1
        if moved:
            messages.success(request, f"{moved} campaign(s) {done}.")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        moves = [("pause", "Pause"), ("resume", "Resume"), ("cancel", "Cancel")]
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "campaign_moves": moves})

    def get_urls(self):
        return [
            path("<uuid:pk>/move/<str:action>/", self.admin_site.admin_view(self.move_view), name="notifier_campaign_move"),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def move_view(self, request, pk, action):
        """The pause / resume / cancel buttons of a campaign's page."""
        moves = {"pause": (campaign_pause, "paused"), "resume": (campaign_resume, "resumed"),
                 "cancel": (campaign_cancel, "cancelled")}
        if action not in moves or not self.has_change_permission(request):
            raise Http404
        campaign = get_object_or_404(models.Campaign, pk=pk)
        self._move(request, [campaign], *moves[action])
        return redirect("admin:notifier_campaign_change", pk)

    def add_view(self, request, form_url="", extra_context=None):
        """Create with a dry run first: "Dry run" shows the estimate of what the form says; "Create and start"
        creates exactly that (if the form changed since, it dry runs again instead)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = CampaignCreateForm(request.POST or None)
        estimate = None
        if request.method == "POST" and form.is_valid() and (body := form.request_body()) is not None:
            spec = form.spec(body)
            fingerprint = request_fingerprint(body)
            if spec is not None and "_create" in request.POST and form.cleaned_data["dry_run_of"] == fingerprint:
                # The key makes a double submit one campaign, as a producer's retry would be.
                spec.idempotency_key, spec.fingerprint = f"admin:{fingerprint}", fingerprint
                campaign, replayed = campaign_create(admin_tools.admin_producer(), spec)
                messages.success(request, f"{'Already created' if replayed else 'Created'} campaign “{campaign.name}”: "
                                          f"{campaign.estimated_recipients} recipient(s), {campaign.status}.")
                return redirect("admin:notifier_campaign_change", campaign.pk)
            if spec is not None:
                if "_create" in request.POST:
                    messages.warning(request, "The campaign changed since its dry run: here is the dry run of "
                                              "what it says now. Create it if this is what you want.")
                campaign, user_ids = campaign_build(admin_tools.admin_producer(), spec)
                estimate = dry_run.campaign_dry_run(campaign, user_ids=user_ids)
                form = CampaignCreateForm({**request.POST.dict(), "dry_run_of": fingerprint,
                                           "channels": request.POST.getlist("channels")})
                form.is_valid()
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Add campaign",
            "form": form, "estimate": estimate, "estimate_json": json.dumps(estimate, indent=2) if estimate else "",
        }
        return TemplateResponse(request, "admin/notifier/campaign/add.html", context)
