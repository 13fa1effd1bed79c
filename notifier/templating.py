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

A template using a refused tag or filter fails to compile, so it is rejected when it is published.
"""
from __future__ import annotations

from django.template import Engine, Library, defaultfilters, defaulttags

ALLOWED_TAGS = (
    "comment", "cycle", "filter", "firstof", "for", "if", "ifchanged", "lorem", "now", "resetcycle",
    "spaceless", "templatetag", "verbatim", "widthratio", "with",
)
REFUSED_FILTERS = frozenset({"safe", "safeseq", "dictsort", "dictsortreversed", "pprint"})

register = Library()
for _name in ALLOWED_TAGS:
    register.tags[_name] = defaulttags.register.tags[_name]
for _name, _filter in defaultfilters.register.filters.items():
    if _name not in REFUSED_FILTERS:
        register.filters[_name] = _filter


class SandboxedEngine(Engine):
    # Engine adds its default builtins (all default tags and filters, plus include/extends) to whatever
    # it is given; the sandbox starts from nothing instead.
    default_builtins = []


sandboxed_engine = SandboxedEngine(
    dirs=[], app_dirs=False, loaders=[], libraries={}, builtins=["notifier.templating"], string_if_invalid="",
)
