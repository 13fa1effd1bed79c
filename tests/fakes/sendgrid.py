"""A fake SendGrid v3 Mail Send API on loopback.

    POST /v3/mail/send   Authorization: Bearer <api_key>   JSON body   → 202, X-Message-Id, empty body

Answers are SendGrid's own: 401 with its error JSON for a wrong key, and for a programmed status the body
SendGrid sends for it (400 "Does not contain a valid address." pointing at the recipient's field, 429 with
the X-RateLimit-* headers, 500 / 503). Outcomes are looked up by the personalizations' `to` addresses; a
request is answered as a whole, as SendGrid does: one programmed 400 refuses the whole batch, naming each
programmed personalization.
https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors

It checks a request as SendGrid does before it takes it, and refuses it with SendGrid's 400 (or 413) and
error body: more than 1,000 personalizations or recipients, an address that is not one ("Does not contain
a valid address.", one error per bad address, field personalizations.N.to.M.email), the same address in two
personalizations, substitutions that are not strings, more than 10,000 of them in a request or more than
10,000 bytes of them in a personalization (keys and values, UTF-8), custom args over 10,000 bytes, a body
over 30 MB. https://www.twilio.com/docs/sendgrid/api-reference/mail-send/limitations

What it takes, it keeps per recipient as SendGrid would send it: `fake.accepted` has one AcceptedMail per
recipient of every personalization, with its own subject, text and HTML (the request's content with that
personalization's substitutions applied), headers and custom args (the request's, merged with the
personalization's, which win), so a test reads what each recipient receives:

    [mail] = fake.accepted_for(delivery_id)
    mail.subject, mail.text, mail.html, mail.headers["List-Unsubscribe"], mail.message_id
    len(fake.requests)                          # requests received, batches counting once
    fake.accepted_per_delivery()                # Counter: delivery id → times accepted (2 is a duplicate)

    fake = FakeSendGrid(api_key="SG.test")      # then start() or `with fake:`
    fake.set_outcome("gone@example.com", status=400)
    fake.set_outcome("busy@example.com", status=429, headers={"X-RateLimit-Reset": "1700000000"})
    fake.requests[-1].body["personalizations"]
    fake.calls_per_delivery()                   # Counter: delivery id → how many times it was sent

It also plays SendGrid's Signed Event Webhook: it keeps what it accepted (`fake.accepted`, with the
X-Message-Id it answered), builds the events SendGrid would report for such a message, and signs them as
SendGrid does, with an ECDSA P-256 key of its own: the signature is base64 DER ECDSA-SHA256 over the
timestamp header followed by the body, and `fake.public_key` is what SendGrid's settings page shows (base64
DER SubjectPublicKeyInfo), to put in SENDGRID_WEBHOOK_PUBLIC_KEY.
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event

    events = [fake.event(mail, "delivered"), fake.event(mail, "click", url="https://shop.example/o/42")]
    fake.post_events(live_server.url + "/api/v1/webhooks/sendgrid/events", events)   # → (status, body)
    body, headers = fake.signed(events)         # the same post, for Django's test client

Standalone, for benchmarks: python -m tests.fakes.sendgrid --port 8090 [--latency 0.05] [--api-key SG.x]
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fakes.http import FakeHTTPServer, Outcome, ReceivedRequest, Reply, json_reply, standalone

MAIL_SEND_PATH = "/v3/mail/send"
DEFAULT_API_KEY = "SG.test-key"
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."

# SendGrid's limits, https://www.twilio.com/docs/sendgrid/api-reference/mail-send/limitations and the Mail
# Send reference (personalizations[].substitutions: "The total collective size of your substitutions may
# not exceed 10,000 bytes per personalization object").
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTIONS = 10_000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_BODY_BYTES = 30 * 1024 * 1024
# What SendGrid takes as an address, leniently: one @, something on each side, no spaces or brackets.
ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+$")

UNAUTHORIZED = {
    "errors": [
        {"field": None, "message": "The provided authorization grant is invalid, expired, or revoked", "help": None}
    ]
}


SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


@dataclass(frozen=True)
class AcceptedMail:
    """One recipient of a personalization of a message the fake answered 202 for: what SendGrid sends
    them, and what its events are about. Text and HTML are rendered when read (a benchmark keeps a
    million of these)."""

    message_id: str  # the X-Message-Id answered
    email: str
    custom_args: dict  # the request's, merged with the personalization's
    categories: list
    subject: str = ""
    headers: dict = field(default_factory=dict)  # the request's, merged with the personalization's
    personalization: int = 0  # its index in the request
    request: dict = field(default=None, repr=False, compare=False)  # the request's JSON body

    @property
    def substitutions(self) -> dict:
        return dict(self._personalization.get("substitutions") or {})

    @property
    def text(self) -> str:
        return self._content("text/plain")

    @property
    def html(self) -> str:
        return self._content("text/html")

    @property
    def _personalization(self) -> dict:
        return self.request["personalizations"][self.personalization] if self.request else {}

    def _content(self, mime: str) -> str:
        for part in (self.request or {}).get("content", []):
            if part.get("type") == mime:
                return substituted(part.get("value", ""), self.substitutions)
        return ""


def substituted(text: str, substitutions: dict) -> str:
    """`text` with every occurrence of each substitution tag replaced by its value, as SendGrid does for
    content and subjects; at each place the longest tag that matches wins."""
    if not substitutions or not text:
        return text
    pattern = re.compile("|".join(re.escape(tag) for tag in sorted(substitutions, key=len, reverse=True)))
    return pattern.sub(lambda match: substitutions[match.group(0)], text)


def signing_key_new() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo, without PEM lines."""
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sign(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """SendGrid's signature: base64 of the DER ECDSA-SHA256 signature over timestamp + body."""
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def error_body(message: str, field: str | None = None) -> dict:
    return {"errors": [{"message": message, "field": field, "help": None}]}


def field_error(message: str, field: str | None, anchor: str) -> dict:
    """One error as SendGrid lists it for a field, with the link to its errors page."""
    return {"message": message, "field": field, "help": HELP + anchor}


def _utf8_size(mapping: dict) -> int:
    return sum(len(str(key).encode()) + len(str(value).encode()) for key, value in mapping.items())


class FakeSendGrid(FakeHTTPServer):
    default_outcome = Outcome(status=202)

    def __init__(self, api_key: str = DEFAULT_API_KEY, **kwargs):
        super().__init__(**kwargs)
        self.api_key = api_key
        self.signing_key = signing_key_new()
        self.public_key = public_key_text(self.signing_key)
        self._accepted: list[AcceptedMail] = []

    def calls_per_delivery(self) -> Counter:
        """How many times each delivery was sent, by the delivery_id custom_arg notifier puts on every
        personalization: the count a provider's own log would give (a batch sent again without the one
        personalization SendGrid refused counts twice for the others)."""
        calls = Counter()
        for request in self.requests:
            if not isinstance(request.body, dict):
                continue
            shared = request.body.get("custom_args") or {}
            for personalization in request.body.get("personalizations", []):
                delivery_id = {**shared, **(personalization.get("custom_args") or {})}.get("delivery_id")
                if delivery_id is not None:
                    calls[delivery_id] += 1
        return calls

    def accepted_per_delivery(self) -> Counter:
        """How many times each delivery was accepted (answered 202): more than once is a duplicate a
        recipient received, whatever requests SendGrid refused on the way."""
        return Counter(mail.custom_args.get("delivery_id") for mail in self.accepted)

    @property
    def accepted(self) -> list[AcceptedMail]:
        """Every personalization of every message answered 202, oldest first."""
        with self._lock:
            return list(self._accepted)

    def accepted_for(self, delivery_id) -> list[AcceptedMail]:
        return [mail for mail in self.accepted if mail.custom_args.get("delivery_id") == str(delivery_id)]

    def clear(self) -> None:
        super().clear()
        with self._lock:
            self._accepted.clear()

    def event(self, mail: AcceptedMail, kind: str, *, custom_args: bool = True, timestamp: int | None = None,
              **fields) -> dict:
        """The event SendGrid would post about `mail`: `kind` is delivered, open, click, bounce, dropped,
        deferred, processed, spamreport, unsubscribe, group_unsubscribe. The usual fields of each kind are
        filled in (a bounce is a hard one, type "bounce", unless told type="blocked"); `fields` add or
        replace. custom_args=False leaves out the echoed custom args, as for a message sent without them."""
        event = {
            "email": mail.email,
            "timestamp": timestamp if timestamp is not None else int(time.time()),
            "event": kind,
            "sg_event_id": secrets.token_urlsafe(16),
            # "<X-Message-Id>.<filter and server ids>": only the part before the first "." is the message id.
            "sg_message_id": f"{mail.message_id}.recvd-5f9c8d7b6-x2k4p-1-6569A1B2-{mail.personalization}.0",
            "smtp-id": f"<{mail.message_id}@geopod-ismtpd-3>",
            "category": list(mail.categories),
        }
        event.update({
            "delivered": {"response": "250 2.0.0 OK  1701485000 d5si123456qkb.42 - gsmtp", "tls": 1},
            "open": {"useragent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "ip": "203.0.113.7",
                     "sg_machine_open": False},
            "click": {"useragent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "ip": "203.0.113.7",
                      "url": "https://example.com/", "url_offset": {"index": 0, "type": "html"}},
            "bounce": {"type": "bounce", "status": "5.1.1", "bounce_classification": "Invalid Address",
                       "reason": "550 5.1.1 The email account that you tried to reach does not exist."},
            "dropped": {"status": "5.0.0", "reason": "Bounced Address"},
            "deferred": {"response": "451 4.7.1 Try again later", "attempt": "1"},
            "group_unsubscribe": {"asm_group_id": 42},
        }.get(kind, {}))
        if custom_args:
            event.update(mail.custom_args)
        event.update(fields)
        return event

    def signed(self, events, *, timestamp: str | None = None, key: ec.EllipticCurvePrivateKey | None = None
               ) -> tuple[bytes, dict]:
        """The body and headers of SendGrid's post of `events` (a list, or any JSON value), signed now
        (or at `timestamp`) with the fake's key (or `key`, to forge one)."""
        body = events if isinstance(events, bytes) else json.dumps(events).encode()
        timestamp = timestamp if timestamp is not None else str(int(time.time()))
        signature = sign(key or self.signing_key, timestamp, body)
        return body, {"Content-Type": "application/json", SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: timestamp}

    def post_events(self, url: str, events, **signing) -> tuple[int, bytes]:
        """POST `events` to a running notifier's webhook URL, signed as SendGrid does (see signed()).
        Returns the answer's status and body."""
        body, headers = self.signed(events, **signing)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

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
        if len(request.raw) > MAX_BODY_BYTES:
            return json_reply(413, error_body("The JSON payload you have included in your request is too large."))
        if not isinstance(request.body, dict):
            return json_reply(400, error_body("Bad Request", None))
        errors = self._limit_errors(request.body)
        if errors:
            return json_reply(400, {"errors": errors})
        return None

    def _limit_errors(self, body: dict) -> list[dict]:
        """SendGrid's refusals of a request that breaks its limits (see the module docstring)."""
        personalizations = body.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            return [field_error("You must have at least one personalization.", "personalizations",
                                "personalizations")]
        if len(personalizations) > MAX_PERSONALIZATIONS:
            return [field_error(
                f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations per API request. "
                f"You have provided {len(personalizations)} personalizations. Please consider splitting this into "
                "multiple requests and resending your request.", "personalizations", "personalizations")]
        recipients = [to for p in personalizations if isinstance(p, dict)
                      for key in ("to", "cc", "bcc") for to in p.get(key) or []]
        if len(recipients) > MAX_RECIPIENTS:
            return [field_error(f"There is a limit of {MAX_RECIPIENTS} total recipients (to + cc + bcc) per request.",
                                "personalizations", "personalizations")]
        errors, seen, substitutions_count = [], set(), 0
        shared_args = body.get("custom_args") if isinstance(body.get("custom_args"), dict) else {}
        for index, personalization in enumerate(personalizations):
            if not isinstance(personalization, dict) or not personalization.get("to"):
                errors.append(field_error("The to parameter is required for all personalization objects.",
                                          f"personalizations.{index}.to", "personalizations.to"))
                continue
            for to in personalization["to"]:
                address = str(to.get("email", "")).lower() if isinstance(to, dict) else ""
                if address and address in seen:
                    errors.append(field_error(
                        "Each unique email address in the personalizations array should only be included once. "
                        f"You have included {address} more than once.", "personalizations", "personalizations"))
                seen.add(address)
            substitutions = personalization.get("substitutions")
            if substitutions is not None:
                where = f"personalizations.{index}.substitutions"
                if not isinstance(substitutions, dict) or not all(isinstance(v, str) for v in substitutions.values()):
                    errors.append(field_error("The substitution values must be an object of key/value pairs, where "
                                              "the values are all strings.", where, "personalizations.substitutions"))
                    continue
                substitutions_count += len(substitutions)
                if _utf8_size(substitutions) > MAX_SUBSTITUTION_BYTES:
                    errors.append(field_error("The total collective size of your substitutions may not exceed "
                                              "10,000 bytes per personalization object.", where,
                                              "personalizations.substitutions"))
            custom_args = {**shared_args, **(personalization.get("custom_args") or {})}
            if _utf8_size(custom_args) > MAX_CUSTOM_ARGS_BYTES:
                errors.append(field_error("The combined size of both global and personalization custom arguments may "
                                          "not exceed 10,000 bytes per personalization.",
                                          f"personalizations.{index}.custom_args", "personalizations.custom_args"))
        if substitutions_count > MAX_SUBSTITUTIONS:
            errors.append(field_error("You are limited to 10,000 substitutions.", "personalizations",
                                      "personalizations.substitutions"))
        return errors

    def respond(self, request: ReceivedRequest, outcome: Outcome) -> Reply:
        if outcome.status == 202:
            invalid = self._invalid_address_errors(request, self._is_invalid)
            if invalid:
                return json_reply(400, {"errors": invalid})
            headers = {"X-Message-Id": secrets.token_urlsafe(16), **outcome.headers}
            self._remember(request, headers["X-Message-Id"])
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

    def _remember(self, request: ReceivedRequest, message_id: str) -> None:
        body = request.body
        categories = list(body.get("categories", []))
        shared_args, shared_headers = body.get("custom_args") or {}, body.get("headers") or {}
        mails = []
        for index, p in enumerate(body.get("personalizations", [])):
            subject = substituted(p.get("subject", body.get("subject", "")), p.get("substitutions") or {})
            custom_args = {**shared_args, **(p.get("custom_args") or {})}
            headers = {**shared_headers, **(p.get("headers") or {})}
            for to in p.get("to", []):
                mails.append(AcceptedMail(message_id, to.get("email", ""), custom_args, categories, subject=subject,
                                          headers=headers, personalization=index, request=body))
        with self._lock:
            self._accepted.extend(mails)

    def _is_invalid(self, address: str) -> bool:
        return not ADDRESS.match(address)

    def _is_programmed_invalid(self, address: str) -> bool:
        with self._lock:
            outcome = self._outcomes.get(address)
        return (outcome is not None and outcome.status == 400 and outcome.body is None) or self._is_invalid(address)

    def _invalid_address_errors(self, request: ReceivedRequest, invalid) -> list[dict]:
        """SendGrid's error for each recipient address `invalid` says is not one."""
        return [field_error("Does not contain a valid address.", f"personalizations.{p_index}.to.{t_index}.email",
                            "personalizations.to")
                for p_index, personalization in enumerate(request.body.get("personalizations", []))
                for t_index, to in enumerate(personalization.get("to", []))
                if invalid(str(to.get("email", "")))]

    def _usual_body(self, request: ReceivedRequest, status: int) -> dict:
        if status == 400:
            return {"errors": self._invalid_address_errors(request, self._is_programmed_invalid)
                    or [field_error("Does not contain a valid address.", "personalizations.0.to.0.email",
                                    "personalizations.to")]}
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


if __name__ == "__main__":
    standalone(FakeSendGrid, "Fake SendGrid v3 Mail Send API", api_key="API key the fake accepts")
