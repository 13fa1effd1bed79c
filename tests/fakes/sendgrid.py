"""A fake SendGrid v3 Mail Send API on loopback.

    POST /v3/mail/send   Authorization: Bearer <api_key>   JSON body   → 202, X-Message-Id, empty body

Answers are SendGrid's own: 401 with its error JSON for a wrong key, and for a programmed status the body
SendGrid sends for it (400 "Does not contain a valid address." pointing at the recipient's field, 429 with
the X-RateLimit-* headers, 500 / 503). Outcomes are looked up by the personalizations' `to` addresses.
https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors

    fake = FakeSendGrid(api_key="SG.test")      # then start() or `with fake:`
    fake.set_outcome("gone@example.com", status=400)
    fake.set_outcome("busy@example.com", status=429, headers={"X-RateLimit-Reset": "1700000000"})
    fake.requests[-1].body["personalizations"]
    fake.calls_per_delivery()                   # Counter: delivery id → how many times it was sent

Standalone, for benchmarks: python -m tests.fakes.sendgrid --port 8090 [--latency 0.05] [--api-key SG.x]
"""
from __future__ import annotations

import json
import secrets
import time
from collections import Counter

from tests.fakes.http import FakeHTTPServer, Outcome, ReceivedRequest, Reply, json_reply, standalone

MAIL_SEND_PATH = "/v3/mail/send"
DEFAULT_API_KEY = "SG.test-key"

UNAUTHORIZED = {
    "errors": [
        {"field": None, "message": "The provided authorization grant is invalid, expired, or revoked", "help": None}
    ]
}


def error_body(message: str, field: str | None = None) -> dict:
    return {"errors": [{"message": message, "field": field, "help": None}]}


class FakeSendGrid(FakeHTTPServer):
    default_outcome = Outcome(status=202)

    def __init__(self, api_key: str = DEFAULT_API_KEY, **kwargs):
        super().__init__(**kwargs)
        self.api_key = api_key

    def calls_per_delivery(self) -> Counter:
        """How many times each delivery was sent, by the delivery_id custom_arg notifier puts on every
        personalization: the count a provider's own log would give."""
        return Counter(personalization["custom_args"]["delivery_id"] for request in self.requests
                       if isinstance(request.body, dict)
                       for personalization in request.body.get("personalizations", []))

    def parse_body(self, headers, raw):
        return json.loads(raw) if raw else None

    def recipients(self, request: ReceivedRequest) -> list[str]:
        body = request.body if isinstance(request.body, dict) else {}
        return [to.get("email", "") for p in body.get("personalizations", []) for to in p.get("to", [])]

    def reject(self, request: ReceivedRequest) -> Reply | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return json_reply(401, UNAUTHORIZED)
        if request.method != "POST" or request.path.split("?")[0] != MAIL_SEND_PATH:
            return json_reply(404, error_body("resource not found"))
        if not isinstance(request.body, dict):
            return json_reply(400, error_body("Bad Request", None))
        return None

    def respond(self, request: ReceivedRequest, outcome: Outcome) -> Reply:
        if outcome.status == 202:
            headers = {"X-Message-Id": secrets.token_urlsafe(16), **outcome.headers}
            return Reply(202, headers, b"")
        headers = dict(outcome.headers)
        if outcome.status == 429:
            headers = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + 60),
                **headers,
            }
        body = outcome.body if outcome.body is not None else self._usual_body(request, outcome.status)
        if isinstance(body, (dict, list)):
            return json_reply(outcome.status, body, headers)
        return Reply(outcome.status, headers, body.encode() if isinstance(body, str) else body)

    def _usual_body(self, request: ReceivedRequest, status: int) -> dict:
        if status == 400:
            return error_body("Does not contain a valid address.", self._field_of_programmed_recipient(request))
        if status == 401:
            return UNAUTHORIZED
        if status == 403:
            return error_body("access forbidden")
        if status == 413:
            return error_body("The JSON payload you have included in your request is too large.")
        if status == 429:
            return {"errors": [{"field": None, "message": "too many requests"}]}
        if status == 503:
            return error_body("service unavailable")
        return error_body("internal error")

    def _field_of_programmed_recipient(self, request: ReceivedRequest) -> str:
        """The JSON path SendGrid names for the bad address, e.g. personalizations.0.to.0.email."""
        with self._lock:
            programmed = set(self._outcomes)
        for p_index, personalization in enumerate(request.body.get("personalizations", [])):
            for t_index, to in enumerate(personalization.get("to", [])):
                if to.get("email") in programmed:
                    return f"personalizations.{p_index}.to.{t_index}.email"
        return "personalizations.0.to.0.email"


if __name__ == "__main__":
    standalone(FakeSendGrid, "Fake SendGrid v3 Mail Send API", api_key="API key the fake accepts")
