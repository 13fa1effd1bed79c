"""gunicorn settings that its command line cannot give: prometheus-client's multiprocess bookkeeping and
a cheaper access log. Used by the Procfile and docker-compose (`gunicorn -c deploy/gunicorn.conf.py ...`).
The hook runs in the master, which has not loaded Django: it uses prometheus-client alone."""
import os
import socket
from types import SimpleNamespace

from gunicorn.glogging import Logger

# What gunicorn's access-log atoms read from the WSGI environ, besides the `{name}e` atoms.
_ENVIRON_READ = ("REMOTE_ADDR", "REQUEST_METHOD", "RAW_URI", "SERVER_PROTOCOL", "PATH_INFO", "QUERY_STRING",
                 "HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_AUTHORIZATION")


class AccessLogger(Logger):
    """gunicorn's logger, whose access-log line is made from what its format names. gunicorn copies every
    request header, response header and environ entry into each line's atoms (as `{name}i`, `{name}o`,
    `{name}e`) and escapes them all, whether the format uses them or not: about 50 µs of a request's CPU
    here, a tenth of a cached inbox read. The Procfile's format uses none of them; a format that names one
    gets them all, as from gunicorn. The line is the same either way (tests/test_gunicorn_conf.py)."""

    def setup(self, cfg):
        super().setup(cfg)
        access_format = cfg.access_log_format or ""
        self._reads = {kind: f"}}{kind})" in access_format for kind in "ioe"}

    def atoms(self, resp, req, environ, request_time):
        if not self._reads["e"]:
            environ = {name: environ[name] for name in _ENVIRON_READ if name in environ}
        if not self._reads["i"]:
            req = ()
        if not self._reads["o"]:
            resp = SimpleNamespace(status=resp.status, sent=getattr(resp, "sent", None), headers=())
        return super().atoms(resp, req, environ, request_time)


logger_class = AccessLogger


def child_exit(server, worker):
    # A worker that exits takes its live gauges with it (prometheus-client's multiprocess docs). The file
    # names carry host-pid, as notifier.metrics.process_identifier makes them. Imported here: the bench
    # serves a peer with this file from a virtualenv without prometheus-client (bench/harness.py api_start).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(f"{socket.gethostname().replace('_', '-')}-{worker.pid}")
