"""Every error answer under /api/ has one shape, and validation errors name each bad field by its path:

    {"error": {"code": "invalid", "message": "...", "fields": {"recipients[2].user_id": ["..."]}}}

An unexpected exception, in a DRF view or a plain one (webhooks), is a 500 in the same shape, with no
internals in it (the traceback goes to the log, as Django logs every 500); an unknown path is a 404 in it,
with DEBUG on or off; a body that is not JSON is a 415 that says to send `Content-Type: application/json`.
"""
import orjson
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, serializers
from rest_framework.views import exception_handler as drf_exception_handler


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text='"invalid", "not_found", "permission_denied", …')
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="For code invalid: each bad field's path and what is wrong with it.")


class ErrorSerializer(serializers.Serializer):
    """The shape of every error answer (described for the OpenAPI schema)."""

    error = ErrorDetailSerializer()


def exception_handler(exc, context):
    # Django's own exceptions carry no code or message; answer them as DRF's would ("not_found", "Not found.").
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        first = next(iter(fields.items()))
        body = {"code": "invalid", "message": f"{first[0]}: {first[1][0]}", "fields": fields}
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        # DRF's message names the type received; say what to send instead.
        body = {"code": exc.detail.code, "message": f"{exc.detail} Send Content-Type: application/json."}
    else:
        body = api_exception_error(exc)
    response.data = {"error": body}
    return response


def api_exception_error(exc) -> dict:
    """The envelope's `error` for an APIException other than a ValidationError: its code and its message.
    Also the stream server's (notifier/streams/asgi.py), which answers without DRF."""
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    code = detail.code if hasattr(detail, "code") else "error"
    return {"code": code, "message": str(detail)}


def server_error(request):
    """handler500: the JSON envelope under /api/, Django's page elsewhere (admin)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "server_error", "message": "Internal server error."}}, status=500)
    return defaults.server_error(request)


def api_not_found(request, exception=None):
    """An unknown path under /api/: the JSON envelope, like every other API error. The last URL pattern, so
    that it answers with DEBUG on too (Django's handler404 is skipped then, for its HTML debug page)."""
    return JsonResponse({"error": no_endpoint_error(request.path)}, status=404)


def no_endpoint_error(path: str) -> dict:
    return {"code": "not_found", "message": f"No endpoint at {path}."}


def page_not_found(request, exception):
    """handler404: an Http404 under /api/ answers the JSON envelope, Django's page elsewhere (admin)."""
    if request.path.startswith("/api/"):
        return api_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def flatten_errors(detail, prefix="") -> dict[str, list[str]]:
    """{"recipients": [{}, {"user_id": ["required"]}]} → {"recipients[1].user_id": ["required"]}."""
    if isinstance(detail, dict):
        flat = {}
        for key, value in detail.items():
            if key == "non_field_errors":
                name = prefix
            elif isinstance(key, int):  # ListField errors are keyed by the item's index
                name = f"{prefix}[{key}]"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_errors(value, name))
        return flat
    if isinstance(detail, list) and detail and all(isinstance(item, str) for item in detail):
        return {prefix or "request": [str(item) for item in detail]}
    if isinstance(detail, list):
        flat = {}
        for index, value in enumerate(detail):
            flat.update(flatten_errors(value, f"{prefix}[{index}]"))
        return flat
    return {prefix or "request": [str(detail)]}


def error_response(status: int, code: str, message: str, fields: dict | None = None) -> HttpResponse:
    """The same error shape, for answers given before a DRF view runs (notifier/api/middleware.py)."""
    return HttpResponse(error_json(code, message, fields), status=status, content_type="application/json")


def error_json(code: str, message: str, fields: dict | None = None) -> bytes:
    """The error envelope as bytes, for answers given without a Django response (the stream server)."""
    return orjson.dumps({"error": {"code": code, "message": message, **({"fields": fields} if fields else {})}})


def method_not_allowed(allowed: list[str]) -> HttpResponse:
    """405 in the error envelope, for the plain (non-DRF) views under /api/ (the provider webhooks)."""
    response = error_response(405, "method_not_allowed", f"Use {' or '.join(allowed)}.")
    response["Allow"] = ", ".join(allowed)
    return response
