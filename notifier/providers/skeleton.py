"""The parts many rendered texts share, and what each text has in their place: for providers that send one
template with per-recipient substitutions (SendGrid's personalizations) instead of one request per message.

A skeleton is a tuple of literal strings L0 … Lk, the text shared by a group of messages, with a hole
between each two: a text fits it when it reads L0 + v1 + L1 + … + vk + Lk, and v1 … vk are its own parts
(its greeting, its tracked links, its unsubscribe link). Filling a skeleton is exact by construction: the
values are the text between the literals, so putting them back always gives the original text, whatever
the literals are; a poor skeleton only costs bigger substitutions, or texts that do not fit it.

    skeleton = skeleton_of(reference, samples)    # the literals the reference shares with all samples
    values = skeleton_fill(skeleton, text)        # this text's parts, or None when it does not fit
    template = skeleton_template(skeleton, tags)  # L0 + tags[0] + L1 + … : what the provider substitutes in

The skeleton is learnt from a reference and a few samples, and every other text is only matched against it
(str.find): a group of 1,000 costs a few comparisons, not 1,000. A comparison walks both texts along what
they share and, where they differ, looks for the nearest place where they agree again (str.find of the
sample's next ANCHOR characters in the reference): linear for texts that differ in short places, as texts
rendered from one template for different recipients do. Holes are widened to whole words and URLs, so
"Ada" and "Anne" differ as names, not after a shared "A".
"""
from __future__ import annotations

import re

# Characters of a word or a URL: a hole never ends inside a run of them.
WORD_CHAR = re.compile(r"[\w\-.~%+=/:?&#@!$*]")
# Where two texts differ, they agree again where this many characters of the sample recur in the reference,
# looked for within MAX_SKIP characters on both sides; a difference longer than that makes the rest one hole.
ANCHOR = 24
MAX_SKIP = 4000
# A literal shorter than this between two holes joins them: it would cost a tag pair to save fewer bytes,
# and a short literal ("> ") is easily found at the wrong place of a text.
MIN_INNER_LITERAL = 16

FIND_HEAD = 64

WHOLE = ("", "")  # the skeleton every text fits: one hole, the whole text


def skeleton_of(reference: str, samples: list[str]) -> tuple[str, ...]:
    """The literals of `reference` that every one of `samples` shares with it, in order: the holes are
    where some sample differs. Identical texts give (reference,), the skeleton without holes."""
    holes = sorted(hole for sample in samples if sample != reference for hole in _holes(reference, sample))
    merged: list[list[int]] = []
    for start, end in holes:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    literals, position = [], 0
    for start, end in merged:
        literals.append(reference[position:start])
        position = end
    literals.append(reference[position:])
    return _short_literals_joined(literals)


def _holes(reference: str, sample: str) -> list[tuple[int, int]]:
    """Where `sample` differs from `reference`: ranges [start, end) of the reference (empty where the
    sample has text the reference lacks)."""
    holes = []
    i = j = 0
    n, m = len(reference), len(sample)
    while True:
        shared = _common_prefix_length(reference, i, sample, j)
        i, j = i + shared, j + shared
        if i == n and j == m:
            return holes
        # A difference that starts inside a word starts at the word: both texts agree on its beginning.
        start = _word_start(reference, i, holes[-1][1] if holes else 0)
        resync = None if i == n or j == m else _resync(reference, i, sample, j)
        if resync is None:  # one text ended, or the difference is longer than we look: the rest differs
            holes.append((start, n))
            return holes
        end_r, end_s = i + resync[0], j + resync[1]
        # And one that ends inside a word ends after it (both texts agree there).
        while (0 < end_r < n and end_s < m and reference[end_r] == sample[end_s]
               and WORD_CHAR.match(reference[end_r]) and WORD_CHAR.match(reference[end_r - 1])):
            end_r, end_s = end_r + 1, end_s + 1
        holes.append((start, end_r))
        i, j = end_r, end_s


def _word_start(text: str, position: int, floor: int) -> int:
    """`position`, moved back to the start of the word it is inside of (not before `floor`)."""
    while position > floor and WORD_CHAR.match(text[position - 1]):
        position -= 1
    return position


def _resync(reference: str, i: int, sample: str, j: int) -> tuple[int, int] | None:
    """The nearest (a, b), b smallest first, where reference[i + a:] and sample[j + b:] agree for ANCHOR
    characters (or to the end of both): the lengths of the differing parts. None beyond MAX_SKIP."""
    n, m = len(reference), len(sample)
    for b in range(0, min(MAX_SKIP, m - j) + 1):
        anchor = sample[j + b:j + b + ANCHOR]
        if len(anchor) < ANCHOR:  # near the sample's end: what is left of it must end the reference too
            if reference.endswith(anchor) and n - len(anchor) >= i + (0 if b else 1):
                return n - len(anchor) - i, b
            continue
        a = reference.find(anchor, i + (0 if b else 1), min(n, i + MAX_SKIP + ANCHOR))
        if a >= 0:
            return a - i, b
    return None


def _common_prefix_length(a: str, i: int, b: str, j: int) -> int:
    """How many characters a[i:] and b[j:] share at their start: galloping, then halving, over slices, so
    the comparisons run in C."""
    most = min(len(a) - i, len(b) - j)
    low, step = 0, 32
    while low + step <= most and a[i + low:i + low + step] == b[j + low:j + low + step]:
        low += step
        step *= 2
    high = min(most, low + step)  # a[i:i+low] == b[j:j+low]; they differ before high, or high == most
    while low < high:
        middle = (low + high + 1) // 2
        if a[i + low:i + middle] == b[j + low:j + middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _short_literals_joined(literals: list[str]) -> tuple[str, ...]:
    """Drop the inner literals shorter than MIN_INNER_LITERAL (their holes become one). The first and the
    last literal stay whatever their length: they anchor the text's start and end."""
    if len(literals) <= 2:
        return tuple(literals)
    inner = [literal for literal in literals[1:-1] if len(literal) >= MIN_INNER_LITERAL]
    return (literals[0], *inner, literals[-1])


def skeleton_fill(skeleton: tuple[str, ...], text: str) -> list[str] | None:
    """The values of the holes of `skeleton` in `text`, or None when the text does not fit (a literal is
    missing). skeleton_template(skeleton, values) == text for every result."""
    first, last = skeleton[0], skeleton[-1]
    if len(skeleton) == 1:
        return [] if text == first else None
    if not text.startswith(first) or not text.endswith(last) or len(text) < len(first) + len(last):
        return None
    values, position, end = [], len(first), len(text) - len(last)
    for literal in skeleton[1:-1]:
        found = _find(text, literal, position, end)
        if found < 0:
            return None
        values.append(text[position:found])
        position = found + len(literal)
    values.append(text[position:end])
    return values


def _find(text: str, literal: str, start: int, end: int) -> int:
    """text.find(literal, start, end), faster for a long literal (a shared paragraph): its head is found,
    and the rest compared there."""
    if len(literal) <= FIND_HEAD:
        return text.find(literal, start, end)
    head = literal[:FIND_HEAD]
    while True:
        found = text.find(head, start, end - len(literal) + FIND_HEAD)
        if found < 0 or text.startswith(literal, found):
            return found
        start = found + 1


def skeleton_template(skeleton: tuple[str, ...], fillers: list[str]) -> str:
    """The text with `fillers` in the holes: the template when they are tags, the original text when they
    are the values skeleton_fill found."""
    parts = [skeleton[0]]
    for filler, literal in zip(fillers, skeleton[1:]):
        parts.append(filler)
        parts.append(literal)
    return "".join(parts)
