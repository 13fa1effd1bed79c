import orjson
from rest_framework.parsers import BaseParser, ParseError
from rest_framework.renderers import BaseRenderer


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
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return orjson.loads(stream.read())
        except orjson.JSONDecodeError as error:
            raise ParseError(f"Request body is not valid JSON: {error}")
