import pytest
from django.contrib.auth.models import User


@pytest.fixture
def ops(client):
    """A Django test client logged in to admin as a superuser."""
    User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.login(username="ops", password="pw")
    return client
