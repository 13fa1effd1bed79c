import orjson
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

from notifier.validation import json_problem


class ORJSONRenderer(BaseRenderer):
    """JSON through orjson: several times faster than the stdlib encoder on the accept path."""

    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


class ORJSONParser(BaseParser):
    """JSON bodies through orjson, checked by json_problem before any code walks them (the body's size is
    bounded before it is read: notifier/api/middleware.py)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            document = orjson.loads(stream.read())
        except orjson.JSONDecodeError as error:
            raise ParseError(f"Request body is not valid JSON: {error}")
        problem = json_problem(document)
        if problem is not None:
            path, why = problem
            raise ValidationError({path or "request": [why]})
        return document
