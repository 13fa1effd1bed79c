"""OpenAPI (drf-spectacular) descriptions of our two kinds of caller, so the schema and Swagger UI show
how to authenticate: `Authorization: Bearer <producer key or recipient token>`."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
