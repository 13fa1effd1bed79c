"""The SendGrid adapter's byte counts: orjson's text, counted as json.dumps writes it."""
import json
import random

from notifier.providers.sendgrid import request_size, substitutions_size


def test_substitutions_are_counted_as_json_dumps_writes_them():
    alphabet = "ab \"\\\n\t\x01\x7fé€🚀\u2028</>&"
    rng = random.Random(7)
    for size in (0, 1, 2, 5, 30):
        substitutions = {f"-tag{n}-": "".join(rng.choices(alphabet, k=rng.randrange(40))) for n in range(size)}

        assert substitutions_size(substitutions) == len(json.dumps(substitutions, ensure_ascii=False).encode())


def test_a_request_is_counted_as_the_sdk_writes_it_or_a_little_under_for_ascii():
    ascii_only = {"to": [{"email": "a@example.com"}], "subject": "Sale", "custom_args": {"d": "1", "n": "x"}}
    accented = {**ascii_only, "subject": "Soldes d'été 🚀 " * 20}

    assert len(json.dumps(ascii_only)) - 12 <= request_size(ascii_only) <= len(json.dumps(ascii_only))
    assert request_size(accented) == len(json.dumps(accented))
