from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from notifier.api.errors import api_not_found
from notifier.health import healthz, livez
from notifier.metrics import metrics_view
from notifier.pages import demo_inbox, preference_center
from notifier.webhooks import sendgrid, twilio

urlpatterns = [
    path("api/v1/webhooks/twilio/status", twilio.status_callback, name="twilio-status"),
    path("api/v1/webhooks/sendgrid/events", sendgrid.events_webhook, name="sendgrid-events"),
    path("api/v1", RedirectView.as_view(pattern_name="api-index"), name="api-index-no-slash"),
    path("api/v1/", include("notifier.api.urls")),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI over the schema, its assets from drf-spectacular-sidecar (served by WhiteNoise: no CDN).
    path("api/v1/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("livez", livez, name="livez"),
    # Prometheus scrapes this; METRICS_TOKEN guards it (notifier/metrics.py).
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    # The end user's pages (docs/end-user.md): the hosted preference center, by its signed link, and the
    # inbox widget's demo (NOTIFIER_DEMO_PAGES).
    path("preferences/<str:token>", preference_center, name="preference-center"),
    path("demo/inbox", demo_inbox, name="demo-inbox"),
    # Last: any other path under /api/ is a JSON 404, with DEBUG on too (handler404 covers DEBUG off only).
    re_path(r"^api/", api_not_found),
]
handler404 = "notifier.api.errors.page_not_found"
handler500 = "notifier.api.errors.server_error"
