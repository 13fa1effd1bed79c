"""Every error answer has one shape, and validation errors name each bad field by its path:

    {"error": {"code": "invalid", "message": "...", "fields": {"recipients[2].user_id": ["..."]}}}
"""
from django.core.exceptions import PermissionDenied
from django.http import Http404
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
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = detail.code if hasattr(detail, "code") else "error"
        body = {"code": code, "message": str(detail)}
    response.data = {"error": body}
    return response


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
