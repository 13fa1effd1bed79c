"""The naive design's API (bench/naive) answers under its own settings: its figure is a comparison."""
import importlib

import pytest


@pytest.mark.django_db
def test_the_naive_api_answers_a_post_under_its_own_settings(client, settings):
    naive = importlib.import_module("bench.naive.settings")
    settings.ROOT_URLCONF = naive.ROOT_URLCONF
    settings.MIDDLEWARE = naive.MIDDLEWARE

    response = client.post("/api/v1/notifications", data={"type": "x", "user_id": "u"},
                           content_type="application/json", HTTP_AUTHORIZATION="Bearer not-a-key")

    assert response.status_code == 401
