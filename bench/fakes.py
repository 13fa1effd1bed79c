"""One fake provider server (from tests/fakes) in its own process, plus a small control endpoint that reports
when each benchmark message arrived.

    python -m bench.fakes --provider apns|fcm|sendgrid|twilio [--latency S]

prints one JSON line: {"provider", "config": <what the adapter needs>, "control": "http://127.0.0.1:P"}.

    GET  <control>/arrivals   {"requests": n, "last_at": t, "arrivals": {ref: first arrival (unix time)}}
    GET  <control>/summary    {"requests": n, "messages": m, "first_at": t0, "last_at": t}
    GET  <control>/targets?prefix=P[&list=1]
                              the summary and {"targets": messages to a target starting with P, "distinct":
                               how many such targets, "duplicated": how many got more than one, "examples":
                               a few of those[, "counts": {target: messages}]}
    POST <control>/reset      forget every request received so far

Targets are what each request is for, one per message: the `to` address of every SendGrid personalization
(a batch of 1,000 counts 1,000), the FCM registration token, the APNs device token, Twilio's To number.

A benchmark message carries a reference `bref<16 hex>` in its text (the bench templates render
`{{ bench_ref }}`), so arrivals are matched to the load generator's POSTs on every provider alike, with no
knowledge of each protocol.

The fake's own request log is drained into a Ledger (counts, refs, first and last arrival) every half
second and then dropped: a campaign of 1,000,000 emails kept as parsed requests, plus SendGrid's accepted
mails for its webhook events, would cost the fake gigabytes. Nothing in the bench reads the fake's log
directly; the control endpoint reads the ledger.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

REF = re.compile(rb"bref([0-9a-f]{16})")


def _raw(request) -> bytes:
    for name in ("raw", "raw_body"):
        value = getattr(request, name, None)
        if value:
            return value
    return json.dumps(getattr(request, "body", None) or {}).encode()


def targets_of(fake, request) -> list[str]:
    """One entry per message the request carries (see the module docstring)."""
    device_token = getattr(request, "device_token", None)  # APNs: the token is in the path
    if device_token is not None:
        return [device_token]
    target = getattr(request, "target", None)  # FCM: message.token
    if target is not None:
        return [target] if target else []
    return list(fake.recipients(request))  # SendGrid: every personalization's `to`; Twilio: To


class Ledger:
    """What a fake received, digested: request count, first and last arrival, messages per target, and the
    first arrival of every bench reference. `drain()` moves the fake's logged requests in and forgets them."""

    def __init__(self, fake):
        self.fake = fake
        self._lock = threading.Lock()  # the counts
        self._draining = threading.Lock()  # one drain or reset at a time: a reset never races a drained batch
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.requests = 0
            self.messages = 0
            self.first_at = None
            self.last_at = None
            self.per_target: Counter = Counter()
            self.arrivals: dict[str, float] = {}

    def drain(self) -> None:
        fake = self.fake
        with self._draining:
            with fake._lock:
                batch = list(fake._requests)
                fake._requests.clear()
                accepted = getattr(fake, "_accepted", None)
                if accepted is not None:  # SendGrid's record for its event webhook: the bench posts no events
                    accepted.clear()
            self.add(batch)

    def reset(self) -> None:
        """Forget everything, in the fake and here."""
        with self._draining:
            _forget(self.fake)
            self.clear()

    def add(self, requests) -> None:
        with self._lock:
            for request in requests:
                self.requests += 1
                at = request.received_at
                self.first_at = at if self.first_at is None else min(self.first_at, at)
                self.last_at = at if self.last_at is None else max(self.last_at, at)
                targets = targets_of(self.fake, request)
                self.messages += len(targets)
                self.per_target.update(targets)
                for match in REF.finditer(_raw(request)):
                    self.arrivals.setdefault(match.group(1).decode(), at)

    def summary(self) -> dict:
        with self._lock:
            return {"requests": self.requests, "messages": self.messages, "first_at": self.first_at,
                    "last_at": self.last_at}

    def targets(self, prefix: str = "", listed: bool = False) -> dict:
        with self._lock:
            counts = [(t, n) for t, n in self.per_target.items() if t.startswith(prefix)]
        duplicated = [t for t, n in counts if n > 1]
        answer = {**self.summary(), "targets": sum(n for _, n in counts), "distinct": len(counts),
                  "duplicated": len(duplicated), "examples": sorted(duplicated)[:5]}
        if listed:
            answer["counts"] = dict(counts)
        return answer


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


def serve_control(fake, ledger: Ledger | None = None) -> ThreadingHTTPServer:
    ledger = ledger or Ledger(fake)

    def drain_forever():
        while True:
            time.sleep(0.5)
            ledger.drain()

    threading.Thread(target=drain_forever, daemon=True).start()

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
            ledger.drain()
            url = urlsplit(self.path)
            if url.path.endswith("/targets"):
                query = parse_qs(url.query)
                self._reply(ledger.targets(query.get("prefix", [""])[0], listed=query.get("list") == ["1"]))
                return
            summary = ledger.summary()
            if "summary" not in url.path:
                with ledger._lock:
                    summary["arrivals"] = dict(ledger.arrivals)
            self._reply(summary)

        def do_POST(self):
            ledger.reset()
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
