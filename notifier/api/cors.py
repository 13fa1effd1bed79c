"""CORS for the inbox endpoints alone, so that the inbox widget (static/notifier/inbox.js) embedded in a
producer's site can call them from the browser with the user's recipient token:

    GET   users/{user_id}/notifications, …/unread-count, …/stream    PATCH …/notifications/{id}
    POST  …/notifications/mark-all-read

only for an Origin listed in NOTIFIER_INBOX_ALLOWED_ORIGINS ("*": any). The preflight (OPTIONS with
Access-Control-Request-Method) is answered here, before authentication, which it cannot pass (a preflight
carries no Authorization). No endpoint else gets a CORS header, and no credentials are allowed: the
token travels in the Authorization header (the stream: `?token=`), never in a cookie.

Our own middleware rather than django-cors-headers: that one is configured by a path regex, and these
endpoints are a handful of URL names among the /users/{user_id}/… paths other endpoints share."""
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpResponse
from django.urls import Resolver404, resolve
from django.utils.cache import patch_vary_headers

INBOX_URL_NAMES = frozenset({"inbox", "inbox-unread", "inbox-read-all", "inbox-stream", "inbox-item"})
ALLOWED_METHODS = "GET, POST, PATCH"
ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"
PREFLIGHT_MAX_AGE_SECONDS = 600


def inbox_origin_allowed(origin: str) -> bool:
    """NOTIFIER_INBOX_ALLOWED_ORIGINS, and notifier's own origin (NOTIFIER_PUBLIC_URL's): its pages (the
    /demo/inbox widget) are another origin to a stream server on another port, as `make run` serves it."""
    allowed = settings.NOTIFIER_INBOX_ALLOWED_ORIGINS
    origin = origin.rstrip("/")
    return "*" in allowed or origin in [entry.rstrip("/") for entry in allowed] or origin == _own_origin()


def _own_origin() -> str:
    parts = urlsplit(settings.NOTIFIER_PUBLIC_URL)
    return f"{parts.scheme}://{parts.netloc}"


def inbox_cors_headers(origin: str, preflight: bool) -> list[tuple[str, str]]:
    """The CORS headers of an inbox endpoint's answer to an allowed `origin` (inbox_origin_allowed), for a
    preflight or an actual request; besides them, Vary must name Origin. The stream server's too."""
    headers = [("Access-Control-Allow-Origin", origin)]
    if preflight:
        headers += [("Access-Control-Allow-Methods", ALLOWED_METHODS), ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
                    ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_SECONDS))]
    return headers


def _is_inbox_endpoint(path: str) -> bool:
    try:
        return resolve(path).url_name in INBOX_URL_NAMES
    except Resolver404:
        return False


class InboxCorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        origin = request.headers.get("Origin", "")
        if not origin or not inbox_origin_allowed(origin) or not _is_inbox_endpoint(request.path_info):
            return self.get_response(request)
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        response = HttpResponse(status=204) if preflight else self.get_response(request)
        for name, value in inbox_cors_headers(origin, preflight):
            response[name] = value
        patch_vary_headers(response, ["Origin"])
        return response
