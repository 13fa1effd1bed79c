"""Checks on everything a request to /api/ brings besides its JSON body (which ORJSONParser checks), made
before any view runs, so that every endpoint, including one added later, is covered:

- the body's size: over NOTIFIER_MAX_REQUEST_BYTES (NOTIFIER_CAMPAIGN_MAX_REQUEST_BYTES for POST
  /api/v1/campaigns, whose segment may list 100,000 user ids) is a 413, answered from the declared
  Content-Length before a byte is read, and for a chunked body (no Content-Length) after reading at most
  the limit + 1;
- an Http404 raised by a plain Django view answers the JSON error envelope, with DEBUG on too;
- every query parameter and path segment: notifier.validation.text_problem, a `user_id` path segment
  must be a user id (validate_user_id) and a `topic` a topic (validate_topic). A 400 names the parameter
  or segment (`cursor`, `user_id`, `topic`).
"""
import io

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404
from django.urls import reverse

from notifier.api.errors import api_not_found, error_response
from notifier.validation import text_problem, validate_topic, validate_user_id

API_PREFIX = "/api/"
# Path segments read alike on every endpoint, checked by name before any view runs.
PATH_SEGMENT_VALIDATORS = {"user_id": validate_user_id, "topic": validate_topic}


def request_body_limit(request) -> int:
    """The most bytes this request's body may have."""
    if request.method == "POST" and request.path_info == reverse("campaign-list"):
        return settings.NOTIFIER_CAMPAIGN_MAX_REQUEST_BYTES
    return settings.NOTIFIER_MAX_REQUEST_BYTES


class ApiInputMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.startswith(API_PREFIX):
            limit = request_body_limit(request)
            if not self._bound_body(request, limit):
                return error_response(413, "request_too_large", f"The request body is larger than {limit} bytes.")
        return self.get_response(request)

    def _bound_body(self, request, limit: int) -> bool:
        """False when the body is over the limit. A chunked body is read here, at most the limit + 1 bytes,
        and handed on as a body of known length."""
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared:
            # Django's request stream reads at most the declared length, so this bounds what is read.
            return declared <= limit
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and request.META.get("wsgi.input_terminated"):
            # No length to check up front: read at most one byte past the limit. Django would otherwise read
            # a chunked body as empty; a server that decodes the chunks and ends the stream (granian, gunicorn)
            # says so with wsgi.input_terminated.
            body = request.META["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return False
            request.META["CONTENT_LENGTH"] = str(len(body))
            request._stream = io.BytesIO(body)  # as HttpRequest.body does once it has read the body
        return True

    def process_exception(self, request, exception):
        """An Http404 from a plain (non-DRF) view under /api/ answers the JSON envelope with DEBUG on too,
        where Django would answer its HTML debug page instead of calling handler404."""
        if isinstance(exception, Http404) and request.path_info.startswith(API_PREFIX):
            return api_not_found(request, exception)
        return None

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not request.path_info.startswith(API_PREFIX):
            return None
        errors = input_problems(view_kwargs, request.GET.lists())
        if not errors:
            return None
        first_name, first_problems = next(iter(errors.items()))
        return error_response(400, "invalid", f"{first_name}: {first_problems[0]}", errors)


def input_problems(path_values: dict, query_lists) -> dict[str, list[str]]:
    """What a 400 names: each path segment (by its URL pattern's name) and query parameter (an iterable
    of (name, [values])) that cannot be taken in. Also the stream server's check, which has no middleware."""
    errors = {}
    for name, value in path_values.items():
        if problem := text_problem(value):
            errors[name] = [problem]
        elif name in PATH_SEGMENT_VALIDATORS:
            try:
                PATH_SEGMENT_VALIDATORS[name](value)
            except ValidationError as error:
                errors[name] = list(error.messages)
    for name, values in query_lists:
        problems = [problem for value in values if (problem := text_problem(value))]
        if problems:
            errors[name] = problems[:1]
    return errors
