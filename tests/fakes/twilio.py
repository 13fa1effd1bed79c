"""A fake Twilio Programmable Messaging API on loopback.

    POST /2010-04-01/Accounts/<AccountSid>/Messages.json   basic auth <AccountSid>:<AuthToken>
         form fields To, From or MessagingServiceSid, Body, StatusCallback
    → 201 with Twilio's message JSON (sid "SM…", status "queued", or "accepted" through a Messaging Service)

Errors use Twilio's own JSON ({"code", "message", "more_info", "status"}): 20003 for bad credentials,
21602/21603/21604 for a missing Body/From/To, and for programmed outcomes. Outcomes are looked up by `To`.
https://www.twilio.com/docs/api/errors

    fake = FakeTwilio(account_sid="AC…", auth_token="…")     # then start() or `with fake:`
    fake.set_error("+15005550001", 21211)                    # Twilio's real body for that error code
    fake.set_outcome("+15005550009", status=503)             # any status, body optional
    fake.requests[-1].body["Body"]                           # form fields, one value each

Standalone, for benchmarks:
    python -m tests.fakes.twilio --port 8091 [--latency 0.05] [--account-sid AC…] [--auth-token …]
"""
from __future__ import annotations

import base64
import re
import secrets
from email.utils import formatdate
from urllib.parse import parse_qs

from notifier.providers.sms_segments import count_segments
from tests.fakes.http import FakeHTTPServer, Outcome, ReceivedRequest, Reply, json_reply, standalone

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "test-auth-token"
MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages\.json$")

# Twilio error codes the fake knows: code -> (HTTP status, message). {to} is the request's To number.
ERRORS = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource {path} was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
}
# The code a programmed status without a body answers with.
CODE_FOR_STATUS = {400: 21211, 401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}


def error_json(code: int, to: str = "", path: str = "") -> dict:
    status, text = ERRORS[code]
    return {
        "code": code,
        "message": text.format(to=to, path=path),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilio(FakeHTTPServer):
    default_outcome = Outcome(status=201)

    def __init__(self, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN, **kwargs):
        super().__init__(**kwargs)
        self.account_sid = account_sid
        self.auth_token = auth_token
        # SIDs to hand out before random ones: a test can post a status callback for a message before the
        # send that creates it has been answered (Twilio's callbacks race its API's answers).
        self.next_sids: list[str] = []

    def set_error(self, to: str, code: int, **options) -> None:
        """Answer messages to `to` with Twilio's error `code` (one of ERRORS) and its HTTP status."""
        self.set_outcome(to, status=ERRORS[code][0], body=error_json(code, to=to), **options)

    def parse_body(self, headers, raw):
        return {name: values[0] for name, values in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}

    def recipients(self, request: ReceivedRequest) -> list[str]:
        return [request.body.get("To", "")] if isinstance(request.body, dict) else []

    def reject(self, request: ReceivedRequest) -> Reply | None:
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(
            f"{self.account_sid}:{self.auth_token}".encode()
        ).decode():
            return json_reply(401, error_json(20003))
        match = MESSAGES_PATH.match(request.path.split("?")[0])
        if request.method != "POST" or not match or match["sid"] != self.account_sid:
            return json_reply(404, error_json(20404, path=request.path))
        fields = request.body or {}
        if not fields.get("To"):
            return json_reply(400, error_json(21604))
        if not fields.get("From") and not fields.get("MessagingServiceSid"):
            return json_reply(400, error_json(21603))
        if not fields.get("Body"):
            return json_reply(400, error_json(21602))
        return None

    def respond(self, request: ReceivedRequest, outcome: Outcome) -> Reply:
        fields = request.body
        if outcome.status == 201:
            return json_reply(201, self._message_json(fields), outcome.headers)
        body = outcome.body
        if body is None:
            code = CODE_FOR_STATUS.get(outcome.status)
            body = error_json(code, to=fields["To"], path=request.path) if code else {
                "code": outcome.status, "message": "Error", "more_info": "", "status": outcome.status}
        if isinstance(body, (dict, list)):
            return json_reply(outcome.status, body, outcome.headers)
        return Reply(outcome.status, outcome.headers, body.encode() if isinstance(body, str) else body)

    def _message_json(self, fields: dict) -> dict:
        """The message resource as Twilio returns it on create."""
        sid = self.next_sids.pop(0) if self.next_sids else "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        through_service = bool(fields.get("MessagingServiceSid"))
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": fields["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": None if through_service else fields.get("From"),
            "messaging_service_sid": fields.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(count_segments(fields["Body"])[1]),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if through_service else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": fields["To"],
            "uri": f"{uri}.json",
        }


if __name__ == "__main__":
    standalone(FakeTwilio, "Fake Twilio Messages API", account_sid="Account SID the fake accepts",
               auth_token="auth token the fake accepts")
