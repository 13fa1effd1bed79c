"""The ceilings: the rows the database ceiling writes, which fake bounds the end-to-end rate, and the lean
provider clients' requests, which each fake must accept."""
import asyncio
import itertools
import json

import pytest
from psycopg.types.json import Jsonb

from bench import ceilings, report
from bench.fakes import start_fake
from bench.scenarios.transactional import slowest


def test_the_database_ceilings_rows_copy_the_template_each_with_its_own_id_recipient_and_time():
    columns = [("id", False), ("recipient_id", False), ("data", True), ("fallback_channels", True),
               ("priority", False), ("created_at", False), ("due_at", False)]
    template = ("old-id", 1, {"order_id": "42"}, None, "high", "then", "then")

    made = list(itertools.islice(ceilings._rows(template, columns, [7, 8, 9], offset=1), 4))

    assert [r[1] for r in made] == [8, 9, 7, 8]  # the recipients in turn, from the client's offset
    assert len({r[0] for r in made}) == 4 and "old-id" not in {r[0] for r in made}
    assert all(isinstance(r[2], Jsonb) and r[2].obj == {"order_id": "42"} for r in made)
    assert all(r[3] is None and r[4] == "high" for r in made)  # a JSON null stays NULL
    assert all(r[5] == r[6] != "then" for r in made)


def test_a_ceiling_that_was_not_measured_is_not_put_beside_a_figure():
    failed = report.row("push", "provider ceiling: fake fcm", None, "req/s", None, None, key="fcm", system="ceiling",
                        status="failed: RuntimeError")
    measured = report.row("push", "provider ceiling: fake fcm", 3000.0, "req/s", None, None, key="fcm",
                          system="ceiling")
    figure = report.row("push", "devices/s", 900.0, "devices/s", None, None, key="push")

    assert ceilings.against(figure, failed, "fake fcm")["ceilings"] == []
    assert ceilings.against(figure, measured, "fake fcm")["ceilings"] == [
        {"name": "fake fcm", "value": 3000.0, "unit": "req/s"}]


def fake_ceiling(provider, value, status="measured"):
    return report.row("transactional", f"provider ceiling: fake {provider}", value, "req/s", None, None,
                      key=provider, system="ceiling", raw={"provider": provider}, status=status)


def test_the_slowest_fake_bounds_the_end_to_end_rate_only_when_every_fake_was_measured():
    fakes = [fake_ceiling("apns", 3000.0), fake_ceiling("fcm", 1800.0), fake_ceiling("twilio", 2500.0)]

    assert slowest(fakes)["raw"]["provider"] == "fcm"
    assert slowest(fakes + [fake_ceiling("sendgrid", None, status="failed: timeout")]) is None


@pytest.mark.parametrize("provider", ["apns", "fcm", "sendgrid", "twilio"])
def test_the_lean_client_sends_what_each_fake_accepts(provider):
    fake, config, env = start_fake(provider, 0.0)
    try:
        result = asyncio.run(ceilings.drive(provider, {"config": config, "env": env}, concurrency=4, duration=0.3,
                                            warmup=0))
        received = fake.requests
    finally:
        fake.stop()

    assert result["ok"] > 0 and result["status"] == {str(ceilings.OK_STATUS[provider]): result["ok"]}
    assert len(received) >= result["ok"]


def test_the_fcm_fake_keeps_each_body_as_it_came_for_the_bench_to_find_its_references_in():
    fake, config, env = start_fake("fcm", 0.0)
    try:
        asyncio.run(ceilings.drive("fcm", {"config": config, "env": env}, concurrency=1, duration=0.1, warmup=0))
        request = fake.requests[0]
    finally:
        fake.stop()

    assert json.loads(request.raw) == request.body
    assert request.body["message"]["token"].startswith("ceiling-token-")


def test_the_sendgrid_client_sends_a_batch_the_fake_takes_whole():
    fake, config, env = start_fake("sendgrid", 0.0)
    try:
        result = asyncio.run(ceilings.drive("sendgrid", {"config": config, "env": env}, concurrency=2, duration=0.3,
                                            warmup=0, batch=50))
        received = fake.requests
    finally:
        fake.stop()

    assert result["ok"] > 0 and result["status"] == {"202": result["ok"]}
    assert all(len(r.body["personalizations"]) == 50 for r in received)
