"""OpenAPI (drf-spectacular) descriptions of our two kinds of caller, so the schema and Swagger UI show
how to authenticate (`Authorization: Bearer <producer key or recipient token>`), and of the path
parameters every endpoint reads alike."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension

from notifier.validation import USER_ID_MAX_LENGTH, USER_ID_PATTERN


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
    "notification_id": {"type": "string", "format": "uuid"},
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
