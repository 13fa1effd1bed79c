from io import StringIO

import pytest
from django.core.management import call_command

from notifier.management.commands import seeddemo
from notifier.models import Producer
from notifier.models.producers import hash_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    path = tmp_path / "var" / "demo-producer-key"
    monkeypatch.setattr(seeddemo, "KEY_FILE", path)
    return path


def run_seeddemo() -> str:
    out = StringIO()
    call_command("seeddemo", stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_it_keeps_the_demo_key_across_runs_so_a_shells_key_stays_valid(key_file):
    first = run_seeddemo()
    second = run_seeddemo()

    assert first == second == key_file.read_text().strip()
    assert Producer.objects.get(name="demo").key_hash == hash_key(first)


def test_a_key_rotated_elsewhere_gets_a_new_one_written(key_file):
    first = run_seeddemo()
    producer = Producer.objects.get(name="demo")
    producer.rotate_key()
    producer.save()

    again = run_seeddemo()

    assert again != first
    assert Producer.objects.get(name="demo").key_hash == hash_key(again) == hash_key(key_file.read_text().strip())
