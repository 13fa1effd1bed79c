"""One fake provider server (from tests/fakes) in its own process, plus a small control endpoint that reports
when each benchmark message arrived.

    python -m bench.fakes --provider apns|fcm|sendgrid|twilio [--latency S]

prints one JSON line: {"provider", "config": <what the adapter needs>, "control": "http://127.0.0.1:P"}.

    GET  <control>/arrivals   {"requests": n, "last_at": t, "arrivals": {ref: first arrival (unix time)}}
    GET  <control>/summary    {"requests": n, "last_at": t}
    POST <control>/reset      forget every request received so far

A benchmark message carries a reference `bref<16 hex>` in its text (the bench templates render
`{{ bench_ref }}`), so arrivals are matched to the load generator's POSTs on every provider alike, with no
knowledge of each protocol. Matching runs when /arrivals is read, never while the fake answers.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REF = re.compile(rb"bref([0-9a-f]{16})")


def _raw(request) -> bytes:
    for name in ("raw", "raw_body"):
        value = getattr(request, name, None)
        if value:
            return value
    return json.dumps(getattr(request, "body", None) or {}).encode()


def arrivals_of(requests) -> dict[str, float]:
    arrivals: dict[str, float] = {}
    for request in requests:
        for match in REF.finditer(_raw(request)):
            ref = match.group(1).decode()
            arrivals.setdefault(ref, request.received_at)
    return arrivals


def start_fake(provider: str, latency: float):
    """The started fake and the provider config (the environment an operator would set)."""
    if provider == "apns":
        from tests.fakes.apns import FakeAPNs

        fake = FakeAPNs(latency=latency).start()
        config = fake.adapter_config()
        config.pop("key")
        config["key_file"] = fake.key_file
        env = {"APNS_KEY_FILE": fake.key_file, "APNS_KEY_ID": fake.key_id, "APNS_TEAM_ID": fake.team_id,
               "APNS_TOPIC": fake.topic, "APNS_USE_SANDBOX": "1", "APNS_HOST": fake.host,
               "APNS_PORT": str(fake.port), "APNS_CA_FILE": fake.ca_file}
    elif provider == "fcm":
        from tests.fakes.fcm import FakeFCM

        fake = FakeFCM(latency=latency).start()
        config = fake.adapter_config()
        config.pop("credentials")
        config["credentials_file"] = fake.credentials_file
        env = {"FCM_CREDENTIALS_FILE": fake.credentials_file, "FCM_ENDPOINT": fake.url}
    elif provider == "sendgrid":
        from tests.fakes.sendgrid import FakeSendGrid

        fake = FakeSendGrid(latency=latency).start()
        config = {"api_key": fake.api_key, "host": fake.url}
        env = {"SENDGRID_API_KEY": fake.api_key, "SENDGRID_HOST": fake.url, "EMAIL_FROM": "bench@example.com"}
    elif provider == "twilio":
        from tests.fakes.twilio import FakeTwilio

        fake = FakeTwilio(latency=latency).start()
        config = {"account_sid": fake.account_sid, "auth_token": fake.auth_token, "base_url": fake.url}
        env = {"TWILIO_ACCOUNT_SID": fake.account_sid, "TWILIO_AUTH_TOKEN": fake.auth_token,
               "TWILIO_FROM_NUMBER": "+15005550006", "TWILIO_BASE_URL": fake.url}
    else:
        raise SystemExit(f"unknown provider {provider!r}")
    return fake, config, env


def _forget(fake) -> None:
    if hasattr(fake, "reset"):
        fake.reset()
    else:
        fake.clear()


def serve_control(fake) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, payload):
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            requests = fake.requests
            summary = {"requests": len(requests), "last_at": max((r.received_at for r in requests), default=None)}
            if "summary" not in self.path:
                summary["arrivals"] = arrivals_of(requests)
            self._reply(summary)

        def do_POST(self):
            _forget(fake)
            self._reply({"reset": True})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    fake, config, env = start_fake(args.provider, args.latency)
    control = serve_control(fake)
    print(json.dumps({"provider": args.provider, "config": config, "env": env,
                      "control": f"http://127.0.0.1:{control.server_address[1]}"}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
