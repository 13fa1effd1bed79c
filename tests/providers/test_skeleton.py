"""Skeletons: the text many rendered emails share, and what each has in its holes."""
import random

from notifier.providers.skeleton import WHOLE, skeleton_fill, skeleton_of, skeleton_template

GREETING = "Hello {name},\nour autumn collection is here, with jackets and boots for every weather.\n{link}\nBye"


def letter(name, link):
    return GREETING.format(name=name, link=link)


def test_identical_texts_have_a_skeleton_without_holes():
    text = letter("Ada", "https://shop.example/a")

    skeleton = skeleton_of(text, [text, text])

    assert skeleton == (text,)
    assert skeleton_fill(skeleton, text) == []
    assert skeleton_fill(skeleton, text + "!") is None


def test_the_holes_are_where_the_samples_differ_whole_words_and_urls():
    reference = letter("Ada", "https://shop.example/c/AbC123")

    skeleton = skeleton_of(reference, [letter("Anne", "https://shop.example/c/XyZ987"),
                                       letter("Mary Ann", "https://shop.example/c/Q")])

    assert skeleton == ("Hello ", ",\nour autumn collection is here, with jackets and boots for every weather.\n",
                        "\nBye")
    assert skeleton_fill(skeleton, letter("Bob", "https://x.example/1")) == ["Bob", "https://x.example/1"]


def test_a_text_that_differs_where_the_samples_did_not_does_not_fit():
    skeleton = skeleton_of(letter("Ada", "L1"), [letter("Bob", "L2")])

    assert skeleton_fill(skeleton, letter("Cleo", "L3").replace("jackets", "coats")) is None


def test_the_whole_skeleton_takes_any_text_as_one_value():
    assert skeleton_fill(WHOLE, "anything at all") == ["anything at all"]
    assert skeleton_template(WHOLE, ["%t1%"]) == "%t1%"


def test_filling_and_putting_back_always_gives_the_text_again():
    rng = random.Random(13)
    words = ["alpha", "beta", "gamma", "<p>", "</p>", " ", "\n", "https://x.example/c/", ",", "ü"]

    def text():
        return "".join(rng.choice(words) for _ in range(rng.randint(0, 60)))

    for _ in range(300):
        reference, samples = text(), [text() for _ in range(rng.randint(0, 3))]
        skeleton = skeleton_of(reference, samples)
        for candidate in [reference, *samples, text()]:
            values = skeleton_fill(skeleton, candidate)
            if values is not None:
                assert skeleton_template(skeleton, values) == candidate
        assert skeleton_fill(skeleton, reference) is not None  # the reference always fits its own
        assert all(skeleton_fill(skeleton, sample) is not None for sample in samples)
