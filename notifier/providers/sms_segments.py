"""How many SMS segments a text costs, and in which encoding it travels.

    count_segments(text) -> (encoding, segments)    encoding is "GSM-7" or "UCS-2"

A text made only of characters from the GSM 03.38 alphabet (the basic set, plus the extension table whose
characters cost two septets: an escape and the character) travels as GSM-7: 160 septets fit one SMS, and a
longer text is split into parts of 153 septets (7 septets go to the concatenation header). Any other
character switches the whole text to UCS-2: 70 UTF-16 code units in one SMS, 67 per part otherwise; an
emoji outside the Basic Multilingual Plane is a surrogate pair and costs two code units.

Parts are packed greedily and an escape sequence or a surrogate pair is never cut in two, as carriers and
Twilio do, so a text near a boundary can need one part more than the plain division suggests.
https://www.twilio.com/docs/glossary/what-sms-character-limit
"""
from __future__ import annotations

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# GSM 03.38 basic character set (the escape 0x1B itself is not a character a text can contain).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: each costs two septets (escape + character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_LIMIT = {GSM7: 160, UCS2: 70}
PART_LIMIT = {GSM7: 153, UCS2: 67}


def count_segments(text: str) -> tuple[str, int]:
    """Return the encoding ("GSM-7" or "UCS-2") and the number of segments `text` needs.

    An empty text still occupies one segment.
    """
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        encoding = GSM7
        units = [2 if char in GSM7_EXTENSION else 1 for char in text]
    else:
        encoding = UCS2
        units = [2 if ord(char) > 0xFFFF else 1 for char in text]

    if sum(units) <= SINGLE_LIMIT[encoding]:
        return encoding, 1
    return encoding, _parts(units, PART_LIMIT[encoding])


def _parts(units: list[int], part_limit: int) -> int:
    """Pack characters of the given sizes into parts of `part_limit`, never splitting a character."""
    parts, used = 1, 0
    for size in units:
        if used + size > part_limit:
            parts, used = parts + 1, 0
        used += size
    return parts
