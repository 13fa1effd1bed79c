from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from notifier.health import healthz
from notifier.metrics import metrics_view
from notifier.webhooks import twilio

urlpatterns = [
    path("api/v1/webhooks/twilio/status", twilio.status_callback, name="twilio-status"),
    path("api/v1/", include("notifier.api.urls")),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("healthz", healthz, name="healthz"),
    # Prometheus scrapes this; METRICS_TOKEN guards it (notifier/metrics.py).
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]
handler404 = "notifier.api.errors.page_not_found"
handler500 = "notifier.api.errors.server_error"
