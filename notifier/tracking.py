"""Email open and click tracking: the signed URLs of the open pixel and the click redirect, the rewriting
of an email's HTML at send time, and reading a click's target back from the delivery.

    /api/v1/t/o/<token>.gif   the open pixel of one delivery (token: the delivery id)
    /api/v1/t/c/<token>       the click redirect of one link of one delivery (token: delivery id and the
                              link's index among the <a href> of the delivery's rendered HTML)

The HTML is rewritten when the message is built for the provider (notifier/channels/email.py), where the
delivery id is known, so every delivery, a replay included, has URLs of its own; the stored content
(Delivery.content) stays as rendered. The redirect's target is never in its URL: it is read back from
that stored HTML by index, so only URLs that were in the rendered email can be reached (no open
redirect), and a token cannot be made to say anything else without the secret key (Signer, salted per
kind, compact: "<id>.<index>:<signature>").

Only http(s) links are rewritten: not mailto: or tel:, not anchors, not the unsubscribe link (one-click
unsubscribe must stay the link the List-Unsubscribe header names), not the preference center link.
"""
from __future__ import annotations

import html
import re
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing

from notifier.models import Category, TrackEngagement
from notifier.preference_links import PREFERENCES_PATH
from notifier.signatures import sign

OPEN_PATH = "/api/v1/t/o/"
CLICK_PATH = "/api/v1/t/c/"
UNSUBSCRIBE_PATH = "/api/v1/unsubscribe/"
_OPEN_SALT = "notifier.track.open"
_CLICK_SALT = "notifier.track.click"

_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def tracking_enabled(notification_type) -> bool:
    """Whether this type's email carries the open pixel and tracked links: its own setting, or by default
    on for marketing and off for everything else (a password reset is nobody's analytics)."""
    if notification_type.track_engagement == TrackEngagement.ON:
        return True
    if notification_type.track_engagement == TrackEngagement.OFF:
        return False
    return notification_type.category == Category.MARKETING


# --- tokens --------------------------------------------------------------------------------------------

def open_token(delivery_id: int) -> str:
    return sign(str(delivery_id), _OPEN_SALT)


def open_token_read(token: str) -> int:
    """The delivery id an open_token carries. Raises signing.BadSignature for anything else."""
    value = signing.Signer(salt=_OPEN_SALT).unsign(token)
    if not value.isascii() or not value.isdigit():
        raise signing.BadSignature("not an open token")
    return int(value)


def click_token(delivery_id: int, index: int) -> str:
    return sign(f"{delivery_id}.{index}", _CLICK_SALT)


def click_token_read(token: str) -> tuple[int, int]:
    """The (delivery id, link index) a click_token carries. Raises signing.BadSignature for anything else."""
    delivery_id, _, index = signing.Signer(salt=_CLICK_SALT).unsign(token).partition(".")
    if not all(part.isascii() and part.isdigit() for part in (delivery_id, index)):
        raise signing.BadSignature("not a click token")
    return int(delivery_id), int(index)


def open_url(delivery_id: int) -> str:
    return f"{_public_url()}{OPEN_PATH}{open_token(delivery_id)}.gif"


def click_url(delivery_id: int, index: int) -> str:
    return f"{_public_url()}{CLICK_PATH}{click_token(delivery_id, index)}"


def _public_url() -> str:
    return settings.NOTIFIER_PUBLIC_URL.rstrip("/")


# --- links ---------------------------------------------------------------------------------------------

class _Links(HTMLParser):
    """The <a href> start tags of an HTML text, as a browser reads them: (start, end, attributes) each, in
    order, with the attribute values unescaped. A parser, not a pattern: text that only looks like an
    href (inside another attribute's value, a comment, a script) is no link."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[int, int, list[tuple[str, str | None]]]] = []
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.feed(source)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "a" and _href(attrs) is not None:
            line, column = self.getpos()
            start = self._line_starts[line - 1] + column
            self.links.append((start, start + len(self.get_starttag_text()), attrs))

    handle_startendtag = handle_starttag


def _href(attrs) -> str | None:
    """The first href, as browsers take it; None when the tag has none or it has no value."""
    for name, value in attrs:
        if name == "href":
            return value.strip() if value is not None else None
    return None


def email_links(html_body: str) -> list[str]:
    """The URLs of every <a href> of an email's HTML, in order: what a click token's index points into."""
    return [_href(attrs) for _, _, attrs in _Links(html_body).links]


def is_web_link(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _is_ours(url: str) -> bool:
    """The unsubscribe and preference center links and tracking URLs already in the HTML are left as they are."""
    base = _public_url()
    return any(url.startswith(base + path) for path in (UNSUBSCRIBE_PATH, PREFERENCES_PATH, OPEN_PATH, CLICK_PATH))


def tracked_html(html_body: str, delivery_id: int, vary: str = "") -> str:
    """The email's HTML with each web link pointing at its click redirect and the open pixel before
    </body> (or at the end). A rewritten <a> tag is written anew from its parsed attributes.

    The parse is done once per distinct body (_tracked_template), and each delivery fills in its own
    signed URLs: a campaign's thousand emails share one body. `vary` is the text that differs between
    otherwise identical bodies (the recipient's unsubscribe URL, which is ours and never rewritten), and
    so does the recipient's preference center link (every email's footer): both are masked for the parse
    and put back after."""
    if "\x00" in html_body:  # the template's slot marker: build this one directly (rendered text has none)
        return _tracked(html_body, lambda index: click_url(delivery_id, index), open_url(delivery_id))
    masks = {mark: text for mark, text in ((_VARY_MARK, vary), (_PREFERENCES_MARK, _preferences_link_in(html_body)))
             if text and text in html_body}
    masked = html_body
    for mark, text in masks.items():
        masked = masked.replace(text, mark)
    template = _tracked_template(masked, _public_url())
    filled = _SLOT.sub(lambda slot: open_url(delivery_id) if slot[1] == "o"
                       else html.escape(click_url(delivery_id, int(slot[1])), quote=True), template)
    for mark, text in masks.items():
        filled = filled.replace(mark, text)
    return filled


def _preferences_link_in(html_body: str) -> str:
    """The one preference center link of an email (its recipient's), or "" when there is none or several."""
    found = set(re.findall(re.escape(_public_url() + PREFERENCES_PATH) + r"[A-Za-z0-9_.:-]+", html_body))
    return found.pop() if len(found) == 1 else ""


# A template's slots: \x00<link index>\x00 for a click URL, \x00o\x00 for the open pixel's.
_SLOT = re.compile("\x00(\\d+|o)\x00")
_VARY_MARK = "notifier-varying-text-9c1e"  # no character an HTML parser treats specially
_PREFERENCES_MARK = "notifier-preferences-link-5b7d"


@lru_cache(maxsize=64)
def _tracked_template(html_body: str, public_url: str) -> str:
    """`public_url` (what _is_ours compares with) is part of the key: a changed setting parses anew."""
    return _tracked(html_body, lambda index: f"\x00{index}\x00", "\x00o\x00")


def _tracked(html_body: str, click_href, pixel_src: str) -> str:
    parts, done = [], 0
    for index, (start, end, attrs) in enumerate(_Links(html_body).links):
        url = _href(attrs)
        if not is_web_link(url) or _is_ours(url):
            continue
        href_seen = False
        rewritten = []
        for name, value in attrs:
            if name == "href" and not href_seen:
                href_seen, value = True, click_href(index)
            rewritten.append(f" {name}" if value is None else f' {name}="{html.escape(value, quote=True)}"')
        parts += [html_body[done:start], "<a", *rewritten, ">"]
        done = end
    rewritten_html = "".join(parts) + html_body[done:]
    pixel = (f'<img src="{pixel_src}" width="1" height="1" alt="" '
             'style="display:block;width:1px;height:1px;border:0;">')
    ends = list(_BODY_END.finditer(rewritten_html))
    if ends:
        at = ends[-1].start()
        return rewritten_html[:at] + pixel + rewritten_html[at:]
    return rewritten_html + pixel


def click_target(html_body: str, index: int) -> str | None:
    """The URL link `index` of a delivery's stored HTML leads to, or None when there is no such web link."""
    links = email_links(html_body)
    if not 0 <= index < len(links) or not links[index] or not is_web_link(links[index]):
        return None
    return links[index]
