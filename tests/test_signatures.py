"""notifier.signatures writes the tokens django.core.signing writes, byte for byte, so Django reads them."""
from unittest import mock

import pytest
from django.core import signing

from notifier.signatures import sign, sign_object


@pytest.mark.parametrize("value", ["123456", "98.2", "", "Zoë:🚀"])
def test_a_value_is_signed_as_djangos_signer_signs_it(value, settings):
    for secret in ("first-secret", "another secret, rotated"):
        settings.SECRET_KEY = secret

        assert sign(value, "notifier.open") == signing.Signer(salt="notifier.open").sign(value)


@pytest.mark.parametrize("obj", [{"u": "u_1", "x": 1_800_000_000}, {"u": "u_" + "a" * 200, "t": "promo", "n": "id"}])
@pytest.mark.parametrize("compress", [False, True])
def test_an_object_is_signed_as_django_signs_it(obj, compress):
    assert sign_object(obj, "s", compress=compress) == signing.Signer(salt="s").sign_object(obj, compress=compress)
    with mock.patch("time.time", return_value=1_800_000_000.5):
        assert (sign_object(obj, "s", compress=compress, timestamped=True)
                == signing.dumps(obj, salt="s", compress=compress))


def test_django_reads_a_token_signed_under_a_key_since_rotated(settings):
    settings.SECRET_KEY = "old"
    token = sign_object({"u": "u_1"}, "s", compress=True, timestamped=True)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new", ["old"]

    assert signing.loads(token, salt="s") == {"u": "u_1"}
    with pytest.raises(signing.BadSignature):
        signing.loads(token, salt="other")
