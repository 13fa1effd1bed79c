"""Where a campaign's worker time goes: a campaign of NOTIFIER_PROFILE_RECIPIENTS (5,000) users × email +
in-app, run in this process: its chunks, then the email deliver step against the fake SendGrid, each timed
with its query count and, with PROFILE=1, cProfile's top functions. Not part of the suite (the file name
does not start with test_); run it on purpose:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/notifier PROFILE=1 \\
        .venv/bin/python -m pytest tests/campaigns/profile_campaign.py -s -p no:logging

`make bench SCENARIO=campaign` tells how fast the whole service is; this tells where one worker spends it.
"""
import cProfile
import io
import os
import pstats
import time

import pytest
from django.db import connection

from notifier.campaigns.fanout import campaign_advance, campaign_chunk_run
from notifier.models import CampaignChunk, Delivery, InboxItem, Template
from notifier.pipeline.dispatch import deliver_due
from tests.campaigns.conftest import make_campaign, make_recipients
from tests.pipeline.test_sendgrid_batches import fake, fake_sendgrid  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)
RECIPIENTS = int(os.environ.get("NOTIFIER_PROFILE_RECIPIENTS", "5000"))


def backend_cpu_ms() -> float:
    """CPU time so far of this test's PostgreSQL backend process (same machine): user + system, in ms."""
    connection.ensure_connection()
    with open(f"/proc/{connection.connection.info.backend_pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def measured(label: str, step):
    queries = []
    profile = cProfile.Profile() if os.environ.get("PROFILE") else None
    database_started, cpu_started = backend_cpu_ms(), time.process_time()
    started = time.perf_counter()
    with connection.execute_wrapper(lambda execute, *args: queries.append(1) or execute(*args)):
        if profile:
            profile.enable()
        result = step()
        if profile:
            profile.disable()
            if os.environ.get("PROFILE_DIR"):  # for pstats or snakeviz: one file per step
                profile.dump_stats(os.path.join(os.environ["PROFILE_DIR"], label.split(" (")[0].replace(" ", "-") + ".prof"))
    print(f"\n=== {label}: {(time.perf_counter() - started) * 1000:.0f} ms, {len(queries)} queries; CPU: "
          f"this process {(time.process_time() - cpu_started) * 1000:.0f} ms, "
          f"PostgreSQL {backend_cpu_ms() - database_started:.0f} ms")
    if profile:
        for order in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats(order).print_stats(30)
            print(text.getvalue())
    return result


def test_profile_a_campaign(fake, promo_type, producer, settings):  # noqa: F811
    settings.NOTIFIER_CAMPAIGN_CHUNKS_IN_FLIGHT = 10 ** 6  # every chunk made at once: the chunks alone are timed
    settings.NOTIFIER_CAMPAIGN_MAX_QUEUED_DELIVERIES = 10 ** 9
    Template.objects.filter(type=promo_type, channel="email").update(html_body=(
        '<p>Hi {{ order_id }}</p><p><a href="https://shop.example/sale">Shop</a></p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'))
    make_recipients(RECIPIENTS)
    campaign = make_campaign(producer, promo_type, channels=["email", "in_app"])

    def chunks():
        campaign_advance(campaign.id)
        return sum(campaign_chunk_run(campaign.id, chunk.number)
                   for chunk in CampaignChunk.objects.filter(campaign=campaign).order_by("number"))

    assert measured("chunks (routing, rows, the in-app items)", chunks) == RECIPIENTS
    assert measured("email deliver step", lambda: deliver_due("email", "low", batch_size=1000)) == RECIPIENTS
    assert InboxItem.objects.count() == RECIPIENTS
    assert Delivery.objects.filter(channel="email", status="sent").count() == RECIPIENTS
