"""Signed links to the hosted preference center (notifier/preference_center.py):

    <NOTIFIER_PUBLIC_URL>/preferences/<token>

A token is `Signer.sign_object({"u": user_id, "x": expires at, unix seconds})`, salted for this use alone:
it opens this one user's preferences and nothing else (a recipient token, `rt_…`, reads the inbox; neither
opens the other). The expiry is inside the signed value, so every link carries its own: a minted link's
`expires_in` (POST /api/v1/users/{user_id}/preferences-link), an email's
NOTIFIER_PREFERENCES_EMAIL_LINK_TTL_SECONDS. A module of its own, light to import: the render step puts a
link in every email.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

from django.conf import settings
from django.core import signing

from notifier.signatures import sign_object

PREFERENCES_PATH = "/preferences/"
_SALT = "notifier.preferences-link"


class LinkError(Exception):
    """A preference link that cannot be used: `expired` True for a genuine link past its expiry."""

    def __init__(self, expired: bool = False):
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


# --- links ---------------------------------------------------------------------------------------------

def preferences_link_issue(user_id: str, ttl_seconds: int | None = None, now: float | None = None) -> tuple[str, datetime]:
    """A signed link to the user's preference center, and when it expires (default
    NOTIFIER_PREFERENCES_LINK_TTL_SECONDS from now)."""
    ttl = settings.NOTIFIER_PREFERENCES_LINK_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    expires = int(now if now is not None else time.time()) + ttl
    token = sign_object({"u": user_id, "x": expires}, _SALT)
    return f"{settings.NOTIFIER_PUBLIC_URL.rstrip('/')}{PREFERENCES_PATH}{token}", datetime.fromtimestamp(expires, UTC)


def preferences_url(user_id: str) -> str:
    """The link an email carries ({{ preferences_url }} and the layout's footer)."""
    return preferences_link_issue(user_id, settings.NOTIFIER_PREFERENCES_EMAIL_LINK_TTL_SECONDS)[0]


def preferences_link_read(token: str, now: float | None = None) -> str:
    """The user id a preference link opens. Raises LinkError (expired or not ours)."""
    try:
        payload = signing.Signer(salt=_SALT).unsign_object(token)  # with SECRET_KEY_FALLBACKS
    except (signing.BadSignature, ValueError, UnicodeError):
        raise LinkError() from None
    if not isinstance(payload, dict) or not isinstance(payload.get("u"), str) or type(payload.get("x")) is not int:
        raise LinkError()
    if payload["x"] <= (now if now is not None else time.time()):
        raise LinkError(expired=True)
    return payload["u"]
