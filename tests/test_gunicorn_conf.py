"""deploy/gunicorn.conf.py's access logger writes the line gunicorn's own writes, for the Procfile's format
and for a format that names headers and environ entries."""
import datetime
import logging
import runpy
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

ROOT = Path(__file__).resolve().parent.parent


def procfile_access_format() -> str:
    api = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
               if line and not line.startswith("#"))["api"]
    args = shlex.split(api)
    return args[args.index("--access-logformat") + 1]


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def access_line(logger_class, access_format: str) -> str:
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", access_format)
    log = logger_class(cfg)
    lines = Lines()
    log.access_log.handlers = [lines]
    environ = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "RAW_URI": "/api/v1/users/u_1/notifications?limit=20",
               "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/api/v1/users/u_1/notifications", "QUERY_STRING": "limit=20",
               "HTTP_USER_AGENT": 'app "7"', "HTTP_AUTHORIZATION": "Bearer rt_secret", "wsgi.url_scheme": "http"}
    request = SimpleNamespace(headers=[("USER-AGENT", 'app "7"'), ("X-REQUEST-ID", "abc")])
    response = SimpleNamespace(status="200 OK", sent=5120, headers=[("Content-Type", "application/json")])
    log.now = lambda: "[04/Dec/2026:02:05:53 +0000]"
    log.access(response, request, environ, datetime.timedelta(microseconds=1234))
    return lines.lines[0]


@pytest.fixture(scope="module")
def access_logger():
    return runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))["logger_class"]


@pytest.mark.parametrize("access_format", [
    procfile_access_format(),
    '%(h)s %({x-request-id}i)s %({content-type}o)s %({wsgi.url_scheme}e)s %(q)s %(u)s "%(a)s"',
])
def test_the_access_line_is_gunicorns(access_logger, access_format):
    assert access_line(access_logger, access_format) == access_line(Logger, access_format)


def test_the_procfiles_line_names_no_secret(access_logger):
    line = access_line(access_logger, procfile_access_format())

    assert line == '10.0.0.7 [04/Dec/2026:02:05:53 +0000] "GET /api/v1/users/u_1/notifications HTTP/1.1" 200 5120 ' \
                   '0.001234s "app \\"7\\""'
    assert "rt_secret" not in line and "limit=20" not in line
