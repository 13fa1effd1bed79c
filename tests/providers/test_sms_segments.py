"""count_segments: GSM-7 versus UCS-2 and the segment boundaries carriers (and Twilio) use."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.providers.sms_segments import GSM7_BASIC, GSM7_EXTENSION, count_segments

BASIC = "".join(sorted(GSM7_BASIC))
EXTENSION = "".join(sorted(GSM7_EXTENSION))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ("GSM-7", 1)),
        ("Your code is 123456", ("GSM-7", 1)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("€" * 80, ("GSM-7", 1)),  # 160 septets: the euro sign is an extension character
        ("€" * 81, ("GSM-7", 2)),
        ("a" * 159 + "[", ("GSM-7", 2)),  # 161 septets
        ("Ça coûte 5 €", ("UCS-2", 1)),  # û is not in the GSM alphabet
        ("ж" * 70, ("UCS-2", 1)),
        ("ж" * 71, ("UCS-2", 2)),
        ("ж" * 134, ("UCS-2", 2)),
        ("ж" * 135, ("UCS-2", 3)),
        ("😀" * 35, ("UCS-2", 1)),  # 70 UTF-16 code units
        ("😀" * 36, ("UCS-2", 2)),
        ("Hello 😀", ("UCS-2", 1)),
    ],
)
def test_it_counts_segments_like_the_carriers(text, expected):
    assert count_segments(text) == expected


def test_it_never_splits_an_escape_sequence_across_parts():
    # 306 septets would fit two parts of 153, but the euro's two septets cannot straddle the boundary.
    text = "a" * 152 + "€" + "a" * 152

    assert count_segments(text) == ("GSM-7", 3)


def test_it_never_splits_a_surrogate_pair_across_parts():
    text = "ж" * 66 + "😀" + "ж" * 66  # 134 code units, but the emoji cannot straddle the boundary

    assert count_segments(text) == ("UCS-2", 3)


@given(st.text(alphabet=BASIC, max_size=2000))
def test_basic_gsm_text_costs_one_septet_per_character(text):
    encoding, segments = count_segments(text)

    assert encoding == "GSM-7"
    assert segments == (1 if len(text) <= 160 else math.ceil(len(text) / 153))


@given(st.text(alphabet=BASIC + EXTENSION, max_size=1000))
def test_gsm_text_fits_within_its_segments(text):
    septets = len(text) + sum(char in GSM7_EXTENSION for char in text)

    encoding, segments = count_segments(text)

    assert encoding == "GSM-7"
    if septets <= 160:
        assert segments == 1
    else:
        # at most one septet is wasted per part boundary
        assert math.ceil(septets / 153) <= segments <= math.ceil(septets / 152)


@given(st.text(max_size=500), st.characters(min_codepoint=0x400, max_codepoint=0x4FF))
def test_one_non_gsm_character_switches_the_whole_text_to_ucs2(text, cyrillic):
    units = len((text + cyrillic).encode("utf-16-le")) // 2

    encoding, segments = count_segments(text + cyrillic)

    assert encoding == "UCS-2"
    if units <= 70:
        assert segments == 1
    else:
        assert math.ceil(units / 67) <= segments <= math.ceil(units / 66)


@given(st.text(max_size=400), st.text(max_size=400))
def test_a_longer_text_never_needs_fewer_segments(text, more):
    encoding, segments = count_segments(text)
    longer_encoding, longer_segments = count_segments(text + more)

    if encoding == longer_encoding:
        assert longer_segments >= segments
