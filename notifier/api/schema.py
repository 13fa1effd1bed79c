"""OpenAPI (drf-spectacular) descriptions of our two kinds of caller, so the schema and Swagger UI show
how to authenticate (`Authorization: Bearer <producer key or recipient token>`), and of the path
parameters every endpoint reads alike."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.permissions import AllowAny

from notifier.validation import TOPIC_MAX_LENGTH, TOPIC_PATTERN, USER_ID_MAX_LENGTH, USER_ID_PATTERN


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "notifier.api.auth.ProducerKeyAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A producer key (nk_…, from `manage.py createproducer`) with the scope the endpoint "
                           "needs, or, on /users/{user_id}/ inbox and preference endpoints, that user's "
                           "recipient token (rt_…).",
        }


class QueryTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """The inbox stream also takes the recipient token as ?token= (a browser's EventSource sends no headers)."""

    target_class = "notifier.api.inbox.RecipientTokenQueryAuthentication"
    name = "recipientTokenQuery"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "query", "name": "token",
                "description": "The user's recipient token (rt_…), for EventSource."}


# Path parameters are read the same way on every endpoint (notifier/api/middleware.py checks every
# user_id segment; views look notification ids up as UUIDs, delivery ids as bigints), so the schema says so by
# name, in one place.
PATH_PARAMETER_SCHEMAS = {
    "user_id": {"type": "string", "pattern": USER_ID_PATTERN, "maxLength": USER_ID_MAX_LENGTH},
    "topic": {"type": "string", "pattern": TOPIC_PATTERN, "maxLength": TOPIC_MAX_LENGTH},
    "notification_id": {"type": "string", "format": "uuid"},
    "campaign_id": {"type": "string", "format": "uuid"},
    "delivery_id": {"type": "integer", "minimum": 1, "maximum": 2 ** 63 - 1},
}


def path_parameter_schemas(result, generator, request, public):
    """drf-spectacular postprocessing hook: the schema of each path parameter in PATH_PARAMETER_SCHEMAS."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in PATH_PARAMETER_SCHEMAS:
                    parameter["schema"] = dict(PATH_PARAMETER_SCHEMAS[parameter["name"]])
    return result


# The 4xx answers any operation can give, whoever wrote the view, and when. Each is in the error envelope
# of notifier/api/errors.py (ErrorSerializer, the "Error" component). A view documents the answers that are
# its own (409, 422, a 404 without a path parameter) with extend_schema; error_responses adds these.
ERROR_REASONS = {
    400: "A path segment, query parameter or body field is invalid: `fields` names each one and what is wrong.",
    401: "No `Authorization: Bearer …` header, or an unknown, revoked or expired key or token.",
    403: "The producer key lacks the scope this operation needs (the message names it), or a recipient token "
         "calls an endpoint it cannot reach.",
    404: "No such object, or one that belongs to another producer or user.",
    413: "The body is larger than NOTIFIER_MAX_REQUEST_BYTES (NOTIFIER_CAMPAIGN_MAX_REQUEST_BYTES for POST "
         "/api/v1/campaigns).",
    415: "The body is not JSON: send `Content-Type: application/json`.",
    429: "Over the producer's quota; `Retry-After` says when to try again.",
}
ERROR_COMPONENT = "Error"


def _codes_for(operation: dict, path: str, view) -> list[int]:
    codes = [400, 401]  # a bad Authorization header is a 401 even where none is needed (the schema)
    if not all(permission is AllowAny for permission in getattr(view, "permission_classes", [None])):
        codes.append(403)
    if "{" in path:
        codes.append(404)
    if "requestBody" in operation:
        codes += [413, 415]
    if getattr(view, "throttle_classes", None):
        codes.append(429)
    return codes


def _views_by_operation(generator) -> dict[tuple[str, str], type]:
    return {(path, method.lower()): getattr(callback, "cls", None)
            for path, _, method, callback in (generator.endpoints or [])}


def error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation documents, in the error envelope, each 4xx of
    ERROR_REASONS it can answer, and every 4xx a view documented itself is in the envelope too (not a
    generic object)."""
    envelope = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    # The component exists because views name ErrorSerializer in their own responses (cancel.py, deadletters.py).
    assert ERROR_COMPONENT in result["components"]["schemas"], "no view names notifier.api.errors.ErrorSerializer"
    views = _views_by_operation(generator)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code in _codes_for(operation, path, views.get((path, method))):
                responses.setdefault(str(code), {"description": ERROR_REASONS[code]})
            for code, response in responses.items():
                if code.startswith("4"):
                    response["content"] = {"application/json": {"schema": envelope}}
            operation["responses"] = dict(sorted(responses.items()))
    return result
