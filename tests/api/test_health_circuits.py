"""GET /healthz names each provider's circuit, and an open circuit does not make notifier unhealthy."""
from notifier.providers.circuit import circuit_record


def test_healthz_names_each_providers_circuit_and_stays_200_while_one_is_open(client, db, settings):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"push": ["sandbox"], "email": ["sendgrid", "smtp"], "sms": ["twilio"]}
    circuit_record("sendgrid", succeeded=False, trailing_failures=settings.NOTIFIER_CIRCUIT_FAILURE_THRESHOLD)

    response = client.get("/healthz")

    assert response.status_code == 200
    providers = response.json()["providers"]
    assert list(providers) == ["sendgrid", "smtp", "twilio"]
    assert providers["sendgrid"].startswith("open until 20") and providers["sendgrid"].endswith("Z")
    assert providers["smtp"] == providers["twilio"] == "closed"


def test_healthz_says_the_circuits_are_unknown_when_redis_does_not_answer(client, db, settings, own_redis):
    settings.NOTIFIER_CHANNEL_PROVIDERS = {"email": ["sendgrid"]}
    settings.REDIS_URL = own_redis.url  # the broker stays on the shared Redis, and answers
    own_redis.stop()

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["providers"]["sendgrid"].startswith("unknown: Redis unreachable")
