"""Schemathesis against the live API: a real granian, the OpenAPI schema it serves at /api/v1/schema,
and a producer key with every scope, so that generated requests (valid ones, and ones that break the
schema on purpose) reach every endpoint past its scope check. No request may get a 5xx (not_a_server_error),
and every answer must be one the schema documents: its status code, its content type and its body
(status_code_conformance, content_type_conformance, response_schema_conformance; the 4xx of every
operation are documented in one place, notifier/api/schema.py error_responses).

Bounded: at most MAX_EXAMPLES fuzzed cases per operation after the coverage phase's boundary cases
(about 2,400 requests in all, one to two minutes on a 2-core machine), with a fixed seed so that a run
can be replayed (`schemathesis run … --seed`). Dictionaries of the ids seeded below let a share of the
generated requests name a real notification, type and user instead of only ones that are not found.
One schemathesis worker: with two, Python 3.11's ast module, which Hypothesis uses to describe
strategies, failed now and then across threads ("AST constructor recursion depth mismatch"), an error
of the tool rather than of the API."""
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from notifier.models import Campaign, CampaignStatus, Delivery, InboxItem, Notification
from notifier.models.producers import SCOPES
from tests.conftest import make_producer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BIN = Path(sys.executable).parent
MAX_EXAMPLES = 50
SEED = 20261202
# Beyond "no 5xx": every answer is one the schema documents, in its status code, content type and body.
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SERVER_ARGS = ("--workers", "2", "--blocking-threads", "4")


def config(notification_id, campaign_id) -> str:
    return f"""
[dictionaries.notification_ids]
values = ["{notification_id}"]

[dictionaries.campaign_ids]
values = ["{campaign_id}"]

[dictionaries.type_keys]
values = ["order_shipped"]

[dictionaries.user_ids]
values = ["u_42"]

[parameters]
"path.notification_id" = {{ dictionary = "notification_ids", probability = 0.5 }}
"path.campaign_id" = {{ dictionary = "campaign_ids", probability = 0.5 }}
"path.user_id" = {{ dictionary = "user_ids", probability = 0.3 }}
"body.type" = {{ dictionary = "type_keys", probability = 0.5 }}
"""


def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(order_type, reachable_user, start_api, tmp_path):
    producer, key = make_producer("fuzzer", list(SCOPES))
    notification = Notification.objects.create(producer=producer, type=order_type, recipient=reachable_user,
                                               priority="high", due_at=timezone.now(), data={"order_id": "1"})
    Delivery.objects.create(notification=notification, channel="sms", priority="high", target="+14155550100",
                            next_attempt_at=timezone.now())
    InboxItem.objects.create(recipient=reachable_user, notification=notification, title="Order shipped")
    campaign = Campaign.objects.create(producer=producer, name="fuzzed", type=order_type, segment={"all": True},
                                       status=CampaignStatus.RUNNING)
    # A stream ends after a second, so generated requests to it do not hold a thread for minutes.
    server = start_api(server_args=SERVER_ARGS, NOTIFIER_INBOX_STREAM_SECONDS=1)
    config_file = tmp_path / "schemathesis.toml"
    config_file.write_text(config(notification.id, campaign.id))

    run = subprocess.run(
        [str(BIN / "schemathesis"), "--no-color", "--config-file", str(config_file), "run",
         f"{server.url}/api/v1/schema?format=json", "--checks", CHECKS,
         "--header", f"Authorization: Bearer {key}", "--phases", "examples,coverage,fuzzing",
         "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1", "--request-timeout", "10",
         "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=270, cwd=tmp_path,  # within pytest's own 300 s
    )

    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:] + server.output()[-5000:]
    assert "Test cases:" in run.stdout
