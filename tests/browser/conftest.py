"""Browser tests: Debian's Chromium (`make install-browser`), driven by Playwright, against the real API
served as `make run` serves it (tests/e2e/conftest.py's processes) on the test database: granian, with its
static files collected as `make run` collects them, and the stream server (uvicorn) on a port of its own,
where the widget opens its stream (its `stream` attribute, or NOTIFIER_INBOX_STREAM_URL for /demo/inbox).

Playwright's sync API keeps an asyncio loop running in this thread while it is started, which makes
Django refuse ORM calls here ("You cannot call this from an async context"). The tests' own set-up queries
are plain sequential code, so they are allowed (DJANGO_ALLOW_ASYNC_UNSAFE) for one module at a time:
Playwright is started per module and stopped after it, and the variable restored, so no other test runs
with the check off. The servers are other processes and keep it."""
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, free_port, start_api, start_streams, start_worker, wait_until  # noqa: F401 (fixtures)

CHROMIUM = "/usr/bin/chromium"
DOCS_IMG = ROOT / "docs" / "img"
# gthread, as the Procfile serves the API. The servers and workers this test process starts keep Django's
# async-safety check (see above): the stream server runs its database work off its event loop.
SAFE = {"DJANGO_ALLOW_ASYNC_UNSAFE": ""}
SERVER_ARGS = ("--workers", "1", "--blocking-threads", "8", "--workers-kill-timeout", "2")


@pytest.fixture(scope="session")
def static_root(tmp_path_factory):
    """The static files as collectstatic writes them for production (WhiteNoise serves them from here)."""
    root = tmp_path_factory.mktemp("static")
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"], cwd=ROOT, check=True,
                   env={**os.environ, "STATIC_ROOT": str(root), "DJANGO_SETTINGS_MODULE": "notifier_project.settings"})
    return root


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make install-browser` (Debian's chromium and chromium-driver).")
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            yield browser
            browser.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def api_server(start_api, start_streams, static_root):
    """The real API as `make run` serves it, granian and the stream server, with the inbox endpoints open
    to the host pages' origin (`host_pages`). `server.url` is the API, `server.stream_url` the streams'."""
    host_port = free_port()

    def start(**env):
        api_port = free_port()
        # As make run: the API's own pages (/demo/inbox) are on NOTIFIER_PUBLIC_URL's origin.
        shared = {"NOTIFIER_INBOX_ALLOWED_ORIGINS": f"http://127.0.0.1:{host_port}",
                  "NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
                  "NOTIFIER_INBOX_STREAM_HEARTBEAT_SECONDS": 0.5, **SAFE, **env}
        streams = start_streams(**shared)
        server = start_api(server_args=SERVER_ARGS, port=api_port, STATIC_ROOT=static_root,
                           NOTIFIER_INBOX_STREAM_URL=streams.url, **shared)
        server.host_port = host_port
        server.stream_url = streams.url
        server.streams = streams
        return server

    return start


@pytest.fixture
def host_pages():
    """A producer's site on an origin of its own (another port: the API's pages are another origin), serving
    the HTML the test gives it: `host_pages.serve(port, {"/": html})` (again: new pages, same server)."""
    pages: dict = {}
    servers = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path.split("?")[0])
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write((body or "not found").encode())

        def log_message(self, *args):
            pass

    class Site:
        def serve(self, port: int, new_pages: dict) -> str:
            pages.update(new_pages)
            if port not in servers:
                servers[port] = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                threading.Thread(target=servers[port].serve_forever, daemon=True).start()
            return f"http://127.0.0.1:{port}"

    yield Site()
    for server in servers.values():
        server.shutdown()
        server.server_close()
