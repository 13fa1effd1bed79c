"""The fault suite's harness. Every test here runs real processes (granian, Celery workers, beat), breaks
something, and checks the same set property afterwards:

- every accepted notification ends in a terminal state (`accepted_ids() == terminal_ids()`: 0 lost), and
- no delivery reached the fake provider twice, except the ones the test allows (sends in flight at a
  crash), which are counted: `FakeSendGrid.calls_per_delivery()` counts requests per delivery id.

Each test files a ChaosReport (lost, duplicates, in flight at the fault); the counts are printed at the end
of the run, so CI output shows them.

Scale: CHAOS_SCALE deliveries per kill test (default 2,000, which keeps the suite within CI's budget on two
cores; CHAOS_SCALE=10000 is the issue's full scale, README "Guarantees").
"""
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import pytest
from django.db import connection
from django.utils import timezone

from notifier.models import NOTIFICATION_OPEN_STATUSES, Notification, NotificationStatus, Recipient
from tests.conftest import make_producer
from tests.e2e.conftest import Process, start_api, start_beat, start_worker  # noqa: F401 (fixtures)
from tests.fakes.sendgrid import FakeSendGrid

CHAOS_SCALE = int(os.environ.get("CHAOS_SCALE", "10000"))
# A claim outlives a batch here by far (a batch of 200 takes about a second), and a killed worker's rows
# come back within a test's patience. Production keeps 360 s, above the task time limit.
CHAOS_LEASE_SECONDS = 15

NOT_TERMINAL = (*NOTIFICATION_OPEN_STATUSES, NotificationStatus.PROCESSING)


# --- the set property -----------------------------------------------------------------------------------

def accepted_ids() -> set[str]:
    """Every notification stored, i.e. accepted (the API answers 202 only for a stored row)."""
    return {str(i) for i in Notification.objects.values_list("id", flat=True)}


def terminal_ids() -> set[str]:
    """Notifications that reached a terminal state: delivered, failed, dead-lettered, suppressed, ..."""
    return {str(i) for i in Notification.objects.exclude(status__in=NOT_TERMINAL).values_list("id", flat=True)}


def all_terminal() -> bool:
    return not Notification.objects.filter(status__in=NOT_TERMINAL).exists()


def duplicates_at_fake(fake: FakeSendGrid) -> dict[str, int]:
    """Delivery id → how many extra times the fake provider received it."""
    return {delivery_id: n - 1 for delivery_id, n in fake.calls_per_delivery().items() if n > 1}


def calls_once_quiet(fake: FakeSendGrid, quiet: float = 0.5) -> set[str]:
    """The deliveries the fake has received, once no request has come for `quiet` seconds. A killed
    worker's last requests may already be on the wire: the fake's threads still read them after the kill."""
    calls = set(fake.calls_per_delivery())
    while True:
        time.sleep(quiet)
        now = set(fake.calls_per_delivery())
        if now == calls:
            return calls
        calls = now


@dataclass
class ChaosReport:
    test: str
    accepted: int = 0
    terminal: int = 0
    lost: int = 0
    sent_at_fake: int = 0
    duplicates: int = 0
    in_flight_at_fault: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        notes = f"  ({'; '.join(self.notes)})" if self.notes else ""
        return (f"{self.test}: accepted {self.accepted}, terminal {self.terminal}, lost {self.lost}, "
                f"sent {self.sent_at_fake}, duplicates {self.duplicates}, "
                f"in flight at the fault {self.in_flight_at_fault}{notes}")


REPORTS: list[ChaosReport] = []


@pytest.fixture
def chaos_report(request):
    return ChaosReport(request.node.name)


def pytest_terminal_summary(terminalreporter):
    if REPORTS:
        terminalreporter.section(f"fault suite (CHAOS_SCALE={CHAOS_SCALE})")
        for report in REPORTS:
            terminalreporter.write_line(report.line())


def settle(report: ChaosReport, fake: FakeSendGrid) -> dict[str, int]:
    """Fill the report's counts from the database and the fake, and file it; returns the duplicates."""
    accepted, terminal = accepted_ids(), terminal_ids()
    duplicates = duplicates_at_fake(fake)
    report.accepted, report.terminal, report.lost = len(accepted), len(terminal), len(accepted - terminal)
    report.sent_at_fake = len(fake.calls_per_delivery())
    report.duplicates = sum(duplicates.values())
    REPORTS.append(report)
    return duplicates


# --- data and processes ---------------------------------------------------------------------------------

def seed_email_notifications(notification_type, count: int, recipient_fields=None, **fields) -> list[Notification]:
    """`count` accepted notifications, each to its own recipient, by email only: one delivery each."""
    producer = make_producer(f"chaos-{uuid.uuid4().hex[:6]}")[0]
    run = uuid.uuid4().hex[:6]
    recipients = Recipient.objects.bulk_create(
        Recipient(user_id=f"chaos-{run}-{i}", email=f"chaos-{run}-{i}@example.com", **(recipient_fields or {}))
        for i in range(count))
    fields.setdefault("due_at", timezone.now())
    fields.setdefault("priority", "high")
    return Notification.objects.bulk_create(
        Notification(producer=producer, type=notification_type, recipient=recipient, data={"order_id": str(i)},
                     channels=["email"], **fields)
        for i, recipient in enumerate(recipients))


@pytest.fixture
def sendgrid():
    with FakeSendGrid(latency=0.005) as fake:  # counts every call it takes, as a real provider's log would
        yield fake


@pytest.fixture
def chaos_env(sendgrid):
    """What every process of a chaos test shares: email through the fake SendGrid, a short lease, a
    sweeper every second (it wakes queues and gives back a dead worker's claims)."""
    return {
        "NOTIFIER_EMAIL_PROVIDERS": "sendgrid", "SENDGRID_API_KEY": sendgrid.api_key,
        "SENDGRID_HOST": sendgrid.url, "EMAIL_FROM": "shop@example.com",
        "NOTIFIER_CLAIM_LEASE_SECONDS": CHAOS_LEASE_SECONDS, "NOTIFIER_SWEEP_INTERVAL_SECONDS": 1,
    }


def app_name(role: str) -> str:
    """A PGAPPNAME that names this test database, so that a test finds (and kills) only its own backends."""
    return f"chaos-{role}-{connection.settings_dict['NAME']}"


def backends(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name = %s", [application_name])
        return cursor.fetchone()[0]


def terminate_backends(application_name: str) -> int:
    """pg_terminate_backend every session of `application_name` on this test database, and no other."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND application_name = %s", [application_name])
        return cursor.fetchone()[0]


def warm_shutdown(process: Process, timeout: float = 60) -> int:
    """SIGTERM to the worker's main process, as a deploy does: it finishes its tasks, then exits."""
    process.popen.send_signal(signal.SIGTERM)
    try:
        return process.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not stop within {timeout} s of SIGTERM:\n{process.output()[-3000:]}")
