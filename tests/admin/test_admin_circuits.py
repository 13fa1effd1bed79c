"""The deliveries page shows each provider's circuit and closes an open one by hand."""
import pytest
from django.urls import reverse

from notifier.providers.circuit import circuit_admit, circuit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def email_providers(settings):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"email": ["sendgrid", "smtp"]}


def test_the_deliveries_page_shows_each_providers_circuit(ops, email_providers, settings):
    circuit_record("sendgrid", succeeded=False, trailing_failures=settings.NOTIFIER_CIRCUIT_FAILURE_THRESHOLD)

    page = ops.get(reverse("admin:notifier_delivery_changelist")).content.decode()

    assert "Provider circuits" in page
    assert "<th>sendgrid</th>\n            <td>open until 20" in page
    assert "<th>smtp</th>\n            <td>closed</td>" in page
    assert page.count('value="Close circuit"') == 1


def test_an_operator_closes_an_open_circuit(ops, email_providers, settings):
    circuit_record("sendgrid", succeeded=False, trailing_failures=settings.NOTIFIER_CIRCUIT_FAILURE_THRESHOLD)

    response = ops.post(reverse("admin:notifier_circuit_close", args=["sendgrid"]), follow=True)

    assert "Closed the circuit of sendgrid" in " ".join(str(m) for m in response.context["messages"])
    assert circuit_admit("sendgrid").verdict == "send"


def test_closing_needs_a_post_and_a_provider_in_use(ops, email_providers):
    assert ops.get(reverse("admin:notifier_circuit_close", args=["sendgrid"])).status_code == 405
    assert ops.post(reverse("admin:notifier_circuit_close", args=["twilio"])).status_code == 404
