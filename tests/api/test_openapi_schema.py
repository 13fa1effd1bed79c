"""The OpenAPI schema tells a client how to authenticate and what each endpoint answers."""
import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema():
    response = APIClient().get("/api/v1/schema?format=json")
    assert response.status_code == 200
    return response.json()


def test_it_declares_bearer_authentication_on_every_operation(schema):
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            names = {name for requirement in operation.get("security", []) for name in requirement}
            assert "bearer" in names, f"{method.upper()} {path} names no bearer security"


def test_creating_answers_201_and_deleting_204(schema):
    paths = schema["paths"]
    assert "201" in paths["/api/v1/users/{user_id}/devices"]["post"]["responses"]
    assert "201" in paths["/api/v1/users/{user_id}"]["put"]["responses"]
    assert "201" in paths["/api/v1/notification-types"]["post"]["responses"]
    assert "204" in paths["/api/v1/users/{user_id}/devices/{token}"]["delete"]["responses"]


def test_generating_it_raises_no_warnings(capsys):
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    SchemaGenerator().get_schema(request=None, public=True)

    assert not GENERATOR_STATS, capsys.readouterr().err


def test_path_parameters_show_what_the_api_accepts(schema):
    from notifier.validation import USER_ID_PATTERN

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "user_id":
                    assert parameter["schema"]["pattern"] == USER_ID_PATTERN, f"{method} {path}"
                elif parameter["name"] == "notification_id" and parameter["in"] == "path":
                    assert parameter["schema"] == {"type": "string", "format": "uuid"}, f"{method} {path}"


def request_schema(schema, path, method):
    reference = schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return schema["components"]["schemas"][reference.rsplit("/", 1)[1]]


def resolve(schema, node):
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def test_the_notification_request_describes_its_recipients(schema):
    from notifier.validation import USER_ID_PATTERN

    body = request_schema(schema, "/api/v1/notifications", "post")
    recipient = resolve(schema, body["properties"]["recipients"]["items"])

    assert body["properties"]["user_id"]["pattern"] == USER_ID_PATTERN
    assert recipient["required"] == ["user_id"]
    assert set(recipient["properties"]) == {"user_id", "data", "channels", "email", "phone", "timezone", "language"}
    assert body["properties"]["data"]["type"] == "object"


def test_the_preferences_document_is_described(schema):
    for method in ("put", "patch"):
        body = request_schema(schema, "/api/v1/users/{user_id}/notification-preferences", method)

        assert set(body["properties"]) == {"channels", "types", "quiet_hours", "language", "marketing_opt_in",
                                           "digest"}


def test_both_cancel_endpoints_describe_their_request_answer_and_errors(schema):
    paths = schema["paths"]
    by_id = paths["/api/v1/notifications/{notification_id}/cancel"]["post"]
    by_key = paths["/api/v1/notifications/cancel"]["post"]
    components = schema["components"]["schemas"]

    for operation in (by_id, by_key):
        answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert answer == "CancelAnswer"
        assert operation["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    notification = components["NotificationCancel"]["properties"]
    assert {"id", "status", "cancelled", "in_flight", "already_sent", "not_sent", "digests"} <= set(notification)
    request = by_key["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert components[request]["required"] == ["idempotency_key"]
    assert by_key["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert "requestBody" not in by_id


def test_the_stats_operation_documents_its_query_fields_and_both_answers(schema):
    operation = schema["paths"]["/api/v1/stats"]["get"]
    answer = resolve(schema, operation["responses"]["200"]["content"]["application/json"]["schema"])
    group = resolve(schema, answer["properties"]["by_channel"]["items"])

    assert {parameter["name"] for parameter in operation["parameters"]} == {
        "since", "until", "channel", "type", "priority"}
    assert set(answer["properties"]) == {"since", "until", "producer", "totals", "by_channel", "by_type"}
    assert {"sent", "delivered", "failed", "bounced", "delivery_rate", "open_rate", "click_rate",
            "latency_ms", "channel"} <= set(group["properties"])
    assert "400" in operation["responses"]


def test_the_campaign_operations_describe_their_bodies_answers_and_conflicts(schema):
    paths = schema["paths"]
    create = paths["/api/v1/campaigns"]["post"]
    components = schema["components"]["schemas"]

    def answer(operation, code):
        return resolve(schema, operation["responses"][code]["content"]["application/json"]["schema"])

    assert set(answer(create, "202")["properties"]) == {"id", "status", "estimated_recipients"}
    assert {"targeted", "eligible", "suppressed"} <= set(answer(create, "200")["properties"])  # the dry run
    assert {"409", "413", "422", "429"} <= set(create["responses"])
    body = request_schema(schema, "/api/v1/campaigns", "post")
    assert body["required"] == ["name", "segment", "type"]
    assert set(resolve(schema, body["properties"]["send_window"]["allOf"][0])["properties"]) == {
        "local_time", "timezone_fallback", "spread_seconds"}
    for action in ("pause", "resume", "cancel"):
        operation = paths[f"/api/v1/campaigns/{{campaign_id}}/{action}"]["post"]
        assert "409" in operation["responses"] and "requestBody" not in operation
        assert [p["schema"] for p in operation["parameters"] if p["name"] == "campaign_id"] == [
            {"type": "string", "format": "uuid"}]
    detail = answer(paths["/api/v1/campaigns/{campaign_id}"]["get"], "200")
    counters = detail["properties"]["counters"]
    counters = resolve(schema, counters["allOf"][0] if "allOf" in counters else counters)
    assert {"targeted", "eligible", "suppressed", "held", "sent", "delivered", "failed", "dead", "waiting",
            "percent_done"} <= set(counters["properties"])
    assert "CampaignPage" in components
