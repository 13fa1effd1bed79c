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
