"""The sandboxed template engine for admin-edited templates.

Templates are written by operators in the admin or through the API, so they are code we did not review.
They get Django's template language minus everything that reaches outside the data they are given:

- no `{% load %}` (no tag library can be added), no `{% include %}` / `{% extends %}` / `{% block %}`
  (no template files are read: the engine has no loaders at all), no `{% debug %}` (it dumps the context
  and the names of every imported module), no `{% url %}`, `{% csrf_token %}` or `{% querystring %}`;
- no `|safe`, `|safeseq` or `{% autoescape off %}`: in HTML email every variable is escaped, always;
- no `|dictsort`, `|dictsortreversed` or `{% regroup %}`, which resolve attribute paths given as strings;
- the context holds only the notification's JSON data (strings, numbers, lists, objects), so there is no
  `settings`, no model and no request to reach; Django refuses any name starting with an underscore
  (`{{ x.__class__ }}` does not compile), and a name that does not exist renders as an empty string.

A template using a refused tag or filter fails to compile, with an error saying it is not allowed in notifier
templates, so it is rejected when it is published. So is a tag left open (`{{ actor ` with no `}}` on its
line), which Django itself would read as text and send as it is.

Nor may a template make the worker build a huge string: a few characters of template would otherwise take
gigabytes (`|center:"999999999"`, `{% lorem 99999999 w %}`, `|stringformat:"999999999s"`, `|add` doubling
a string in nested `{% with %}`, nested loops over the data). Widths, precisions and lorem counts are capped,
`|add` may not build more than the output limit, loops share an iteration budget per render, and
`render_capped` refuses an output longer than MAX_OUTPUT_CHARS. Each raises SandboxLimitError, which the
render step reports as a RenderError.
"""
from __future__ import annotations

import functools
import re

from django.template import Engine, Library, TemplateSyntaxError, defaultfilters, defaulttags, loader_tags
from django.template.base import BLOCK_TAG_START, Lexer, Parser, Template
from django.utils.text import get_text_list

ALLOWED_TAGS = (
    "comment", "cycle", "filter", "firstof", "for", "if", "ifchanged", "lorem", "now", "resetcycle",
    "spaceless", "templatetag", "verbatim", "widthratio", "with",
)
REFUSED_FILTERS = frozenset({"safe", "safeseq", "dictsort", "dictsortreversed", "pprint"})
# Django's own tags that the sandbox leaves out, named as refused (not unknown) when a template uses one.
REFUSED_TAGS = frozenset({*defaulttags.register.tags, *loader_tags.register.tags} - set(ALLOWED_TAGS))
_TAG_OPENING = re.compile(r"{[{%#]")
_TAG_CLOSING = {"{{": "}}", "{%": "%}", "{#": "#}"}

# Limits: far above what a notification needs (Gmail clips an email's HTML at about 100 KB).
MAX_OUTPUT_CHARS = 200_000  # one rendered field (subject, body, HTML part…)
MAX_WIDTH = 1000  # |center, |ljust, |rjust, and any width or precision in |stringformat or |floatformat
MAX_LOREM_COUNT = 50  # {% lorem %} words or paragraphs
MAX_LOOP_ITERATIONS = 10_000  # all {% for %} iterations of one render together, nested loops included
_NUMBERS = re.compile(r"\d+")


class SandboxLimitError(Exception):
    """A template would build more than the sandbox allows."""


def _capped_numbers(name, original):
    """`original` with every number in its argument at most MAX_WIDTH."""

    @functools.wraps(original)
    def capped(value, arg=None):
        if arg is not None and any(int(n) > MAX_WIDTH for n in _NUMBERS.findall(str(arg))):
            raise SandboxLimitError(f"|{name}:{str(arg)[:20]!r} is over the limit of {MAX_WIDTH}")
        return original(value) if arg is None else original(value, arg)

    return capped


def _capped_add(value, arg):
    result = defaultfilters.add(value, arg)
    if hasattr(result, "__len__") and len(result) > MAX_OUTPUT_CHARS:
        raise SandboxLimitError(f"|add built a value of {len(result)} items, over the limit of {MAX_OUTPUT_CHARS}")
    return result


class _CappedLoremCount:
    def __init__(self, count):
        self.count = count

    def resolve(self, context):
        count = self.count.resolve(context)
        try:
            too_many = int(count) > MAX_LOREM_COUNT
        except (TypeError, ValueError):
            too_many = False  # LoremNode renders a bad count as 1
        if too_many:
            raise SandboxLimitError(f"{{% lorem {count} %}} is over the limit of {MAX_LOREM_COUNT}")
        return count


class _BudgetedSequence:
    """A {% for %} loop's sequence, counted against the render's iteration budget when it is resolved
    (an inner loop is resolved once per outer iteration, so nested loops add up)."""

    def __init__(self, sequence):
        self.sequence = sequence

    def resolve(self, context, ignore_failures=False):
        values = self.sequence.resolve(context, ignore_failures=ignore_failures)
        if values is None or not hasattr(values, "__iter__"):
            return values
        if not hasattr(values, "__len__"):
            values = list(values)
        spent = context.render_context.get("sandbox_loop_iterations", 0) + len(values)
        if spent > MAX_LOOP_ITERATIONS:
            raise SandboxLimitError(f"loops ran more than {MAX_LOOP_ITERATIONS} iterations")
        context.render_context["sandbox_loop_iterations"] = spent
        return values


def _do_for(parser, token):
    node = defaulttags.do_for(parser, token)
    node.sequence = _BudgetedSequence(node.sequence)
    return node


def _do_lorem(parser, token):
    node = defaulttags.lorem(parser, token)
    node.count = _CappedLoremCount(node.count)
    return node


register = Library()
for _name in ALLOWED_TAGS:
    register.tags[_name] = defaulttags.register.tags[_name]
register.tags["for"] = _do_for
register.tags["lorem"] = _do_lorem
for _name, _filter in defaultfilters.register.filters.items():
    if _name not in REFUSED_FILTERS:
        register.filters[_name] = _filter
for _name in ("center", "ljust", "rjust", "stringformat", "floatformat"):
    register.filters[_name] = _capped_numbers(_name, defaultfilters.register.filters[_name])
register.filters["add"] = functools.wraps(defaultfilters.add)(_capped_add)


def render_capped(compiled, context) -> str:
    """Render a compiled sandbox template; refuses an output longer than MAX_OUTPUT_CHARS."""
    output = compiled.render(context)
    if len(output) > MAX_OUTPUT_CHARS:
        raise SandboxLimitError(f"the output is {len(output)} characters, over the limit of {MAX_OUTPUT_CHARS}")
    return output


class _SandboxLexer(Lexer):
    """Django's lexer, refusing a tag opening ({{, {% or {#) that is not closed on its line: Django reads
    it as text, so `{{ actor ` would be sent as it is. Text inside {% verbatim %} and {% comment %} is
    left alone, as Django leaves it."""

    in_comment = False

    def create_token(self, token_string, position, lineno, in_tag):
        if in_tag and token_string.startswith(BLOCK_TAG_START) and not self.verbatim:
            content = token_string[2:-2].strip()
            if content == "comment" or content.startswith("comment "):
                self.in_comment = True
            elif content == "endcomment":
                self.in_comment = False
        if not in_tag and not self.verbatim and not self.in_comment:
            opening = _TAG_OPENING.search(token_string)
            if opening:
                line = lineno + token_string.count("\n", 0, opening.start())
                raise TemplateSyntaxError(
                    f"'{opening.group()}' on line {line} is not closed: a tag must end with "
                    f"'{_TAG_CLOSING[opening.group()]}' on the same line."
                )
        return super().create_token(token_string, position, lineno, in_tag)


class _SandboxParser(Parser):
    """Django's parser, saying that a refused tag or filter is not allowed here. (Django's own message
    suggests registering or loading the tag, which no notifier template can do.)"""

    def invalid_block_tag(self, token, command, parse_until=None):
        if command in REFUSED_TAGS:
            raise self.error(token, f"The tag '{command}' is not allowed in notifier templates (line {token.lineno}).")
        if parse_until:
            expected = get_text_list([f"'{p}'" for p in parse_until], "or")
            raise self.error(token, f"Unexpected tag '{command}' on line {token.lineno}, expected {expected}.")
        raise self.error(token, f"Unknown tag '{command}' on line {token.lineno}.")

    def find_filter(self, filter_name):
        if filter_name in REFUSED_FILTERS:
            raise TemplateSyntaxError(f"The filter '{filter_name}' is not allowed in notifier templates.")
        if filter_name not in self.filters:
            raise TemplateSyntaxError(f"Unknown filter '{filter_name}'.")
        return self.filters[filter_name]


class SandboxTemplate(Template):
    """A template compiled by the sandbox's lexer and parser (Django's own, with the refusals above)."""

    def compile_nodelist(self):
        tokens = _SandboxLexer(self.source).tokenize()
        parser = _SandboxParser(tokens, self.engine.template_libraries, self.engine.template_builtins, self.origin)
        nodelist = parser.parse()
        self.extra_data = parser.extra_data
        return nodelist


class SandboxedEngine(Engine):
    # Engine adds its default builtins (all default tags and filters, plus include/extends) to whatever
    # it is given; the sandbox starts from nothing instead.
    default_builtins = []

    def from_string(self, template_code):
        return SandboxTemplate(template_code, engine=self)


sandboxed_engine = SandboxedEngine(
    dirs=[], app_dirs=False, loaders=[], libraries={}, builtins=["notifier.templating"], string_if_invalid="",
)
