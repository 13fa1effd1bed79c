from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from notifier.health import healthz
from notifier.webhooks import sendgrid, twilio

urlpatterns = [
    path("api/v1/webhooks/twilio/status", twilio.status_callback, name="twilio-status"),
    path("api/v1/webhooks/sendgrid/events", sendgrid.events_webhook, name="sendgrid-events"),
    path("api/v1/", include("notifier.api.urls")),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
handler404 = "notifier.api.errors.page_not_found"
handler500 = "notifier.api.errors.server_error"
