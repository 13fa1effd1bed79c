"""The per-provider send rate: one token bucket in Redis, shared by every worker."""
import os
import subprocess
import sys
import time

import pytest

from notifier.providers.send_rate import send_tokens_take


@pytest.fixture(autouse=True)
def twilio_at_20_per_second(settings):
    settings.NOTIFIER_PROVIDER_MAX_PER_SECOND = {"twilio": 20}


def test_a_provider_without_a_limit_gets_every_token_without_asking_redis(settings, own_redis):
    settings.REDIS_URL = own_redis.url
    own_redis.stop()

    assert send_tokens_take("sendgrid", 500) == (500, 0.0)


def test_the_bucket_holds_one_second_of_sends_then_refills_at_the_rate():
    granted, wait = send_tokens_take("twilio", 50)
    assert (granted, round(wait, 2)) == (20, 0.05)
    assert send_tokens_take("twilio", 5)[0] == 0

    time.sleep(0.26)  # about 5 tokens

    granted, _ = send_tokens_take("twilio", 10)
    assert 4 <= granted <= 6


def test_two_processes_share_one_rate(settings):
    child = (
        "import django, os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'notifier_project.settings'; django.setup();"
        "from django.conf import settings; settings.NOTIFIER_PROVIDER_MAX_PER_SECOND = {'twilio': 20};"
        "from notifier.providers.send_rate import send_tokens_take; print('ready', flush=True); sys.stdin.readline();"
        "print(send_tokens_take('twilio', 15)[0], flush=True)"
    )
    other = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "REDIS_URL": settings.REDIS_URL})
    assert other.stdout.readline().strip() == "ready"  # Django is set up there: the next take is quick

    granted_here = send_tokens_take("twilio", 15)[0]
    other.stdin.write("go\n")
    other.stdin.flush()
    granted_there = int(other.stdout.readline())
    other.wait(10)

    assert granted_here == 15
    assert 5 <= granted_there <= 6  # the 5 left, and what refilled in the moment between


def test_with_redis_unreachable_the_limit_is_not_applied(settings, own_redis):
    settings.REDIS_URL = own_redis.url
    own_redis.stop()

    assert send_tokens_take("twilio", 100) == (100, 0.0)
