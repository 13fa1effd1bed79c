"""Email through SendGrid's v3 Mail Send API, with the official `sendgrid` SDK.

Config keys (all strings unless noted), passed to build(config):
    api_key      SendGrid API key (required)
    from_email   sender address (required)
    from_name    sender display name (optional)
    host         API base URL, default "https://api.sendgrid.com" (tests point it at the fake server)
    timeout      seconds per HTTP request (number), default 10
    batch_size   most personalizations in one request for low-priority email (number), default and
                 at most 1000 (SendGrid's limit); 1 sends every message on its own

A message of medium or high priority (transactional) is one request: a personalization for `message.to`
carrying custom_args notification_id and delivery_id (SendGrid echoes custom_args in every Event Webhook
event, so a webhook finds its delivery), a text/plain part and, when there is HTML, a text/html part, the
X-Notification-ID header plus `message.headers` (List-Unsubscribe, ...), and categories [type_key,
category].

Low-priority email (campaigns, bulk) is batched: up to `batch_size` messages in one request, one
personalization each, with its own `to`, `subject`, `headers` and `custom_args` (the same as a single
send's), and `substitutions` for the parts of its text and HTML that differ from the others' (its
greeting, tracked links, open pixel, unsubscribe link). What all of them share goes once into the request's
`content`, with a substitution tag in each hole (notifier/providers/skeleton.py learns the shared parts
from a few of the texts, and every text is checked to read back exactly). SendGrid's limits decide what
goes together: at most 1,000 personalizations and one personalization per address in a request, at most
10,000 bytes of substitutions per personalization (counted as their JSON, stricter than SendGrid's count),
and MAX_REQUEST_BYTES per request (below SendGrid's 30 MB). A message that fits no batch is sent on its own,
as a transactional one is. Every message of a request gets the request's X-Message-Id as its provider
message id; events still find their delivery by the delivery_id custom arg.
https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
https://www.twilio.com/docs/sendgrid/for-developers/sending-email/substitution-tags

Errors (https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors):
    400 whose error names a recipient address as invalid   PermanentError(target_gone=True)
    other 4xx (400 bad payload, 401/403 bad key, 413)      PermanentError
    429                                                    RateLimited(retry_after from Retry-After or
                                                           X-RateLimit-Reset)
    5xx, connection errors, timeouts                       TransientError

A batch is answered as a whole, and its messages get the same kinds, with one exception: SendGrid refuses
the whole request (400) for one bad personalization, and 999 good messages must not fail with it. So:
    400 naming personalizations.N.to as invalid            that message: PermanentError(target_gone=True);
                                                           the others are sent again as a batch (up to
                                                           MAX_ISOLATION_ROUNDS times)
    400 about anything else of personalizations.N          that message is sent on its own, which gives
                                                           its own answer; the others again as a batch
    400 naming no personalization, 413                     every message is sent on its own
    401, 403 and other 4xx                                 PermanentError for all
    429                                                    RateLimited for all
    5xx, connection errors, timeouts                       TransientError for all
All messages of a failed request share one error object: the channel (send_guarded) counts one failure of
the provider per failed request for its circuit, not one per message.
"""
from __future__ import annotations

import http.client
import io
import json
import logging
import os
import re
import secrets
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import orjson
import python_http_client
import urllib3
from python_http_client.exceptions import HTTPError, handle_error
from sendgrid import SendGridAPIClient

from notifier.providers.base import (
    Message,
    PermanentError,
    Provider,
    ProviderError,
    RateLimited,
    SendResult,
    TransientError,
    sent_log_level,
)
from notifier.providers.skeleton import WHOLE, skeleton_fill, skeleton_of, skeleton_template

logger = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.sendgrid.com"
DEFAULT_TIMEOUT = 10.0

# The error's `field` when SendGrid rejects one recipient: "personalizations.0.to.0.email", or
# "personalizations.12.to" for the array.
RECIPIENT_FIELD = re.compile(r"^personalizations\.\d+\.(to|cc|bcc)(\.\d+(\.email)?)?$")
# Any error about one personalization: its index.
PERSONALIZATION_FIELD = re.compile(r"^personalizations\.(\d+)(\.|$)")

# SendGrid's limits (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/limitations and the
# Mail Send reference): personalizations (and recipients) per request, the collective size of one
# personalization's substitutions, and the size of a request (30 MB, with room for our estimate).
BATCH_MAX = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_REQUEST_BYTES = 20 * 1024 * 1024
# Skeletons learnt for the messages of one kind before the rest is tried with the whole text in its
# substitutions; each is learnt from a reference and this many samples that differ from it.
TEMPLATE_ROUNDS = 3
TEMPLATE_SAMPLES = 3
# A refused batch is sent again without the personalizations SendGrid named at most this many times; what is
# left then is sent one message at a time.
MAX_ISOLATION_ROUNDS = 5
# notifier tracks opens and clicks itself, by the type's setting (notifier/tracking.py): the account's own
# tracking would wrap tracked links a second time, and track the email a type says not to.
TRACKING_OFF = {"click_tracking": {"enable": False, "enable_text": False}, "open_tracking": {"enable": False}}
# The MIME parts of an email and the Message field each one comes from, in SendGrid's required order.
PARTS = (("text/plain", "body"), ("text/html", "html_body"))


def substitutions_size(substitutions: dict[str, str]) -> int:
    """The bytes of `substitutions` as json.dumps(ensure_ascii=False) writes them, in UTF-8: orjson's
    compact text (the same escapes) and json's space after each colon and comma. orjson is ten times as
    fast, and a campaign measures a thousand of these per request."""
    return len(orjson.dumps(substitutions)) + max(0, 2 * len(substitutions) - 1)


def request_size(value) -> int:
    """About the bytes `value` takes in the SDK's request body (json.dumps: ASCII, spaced): orjson's
    compact text when it is ASCII, a few bytes short per item, which MAX_REQUEST_BYTES leaves room
    for; json's own count when it is not (an escape takes up to three times the UTF-8 bytes)."""
    text = orjson.dumps(value)
    return len(text) if text.isascii() else len(json.dumps(value))


@dataclass
class _Batch:
    """Messages sent in one request: their shared content (a skeleton per part, its holes tagged with
    `nonce`) and, per message, its index in the caller's list and its personalization."""

    skeletons: dict  # Message field -> skeleton
    nonce: str
    members: list = field(default_factory=list)  # [(index, personalization dict)]
    size: int = 0  # bytes of the personalizations' JSON so far

    def tags(self, part: str) -> list[str]:
        return _tags(self.nonce, part, self.skeletons[part])


class SendGridProvider(Provider):
    """Sends email through SendGrid: one request per message, or for low-priority email up to
    `batch_size` messages per request. See the module docstring for config, batching and errors."""

    name = "sendgrid"
    channel = "email"

    def __init__(self, api_key: str, from_email: str, from_name: str = "", host: str = DEFAULT_HOST,
                 timeout: float = DEFAULT_TIMEOUT, batch_size: int = BATCH_MAX):
        self.api_key = api_key
        self.from_email = from_email
        self.from_name = from_name
        self.host = host
        self.timeout = timeout
        self.batch_size = max(1, min(BATCH_MAX, int(batch_size)))
        # Never let the SDK fall back to the SENDGRID_API_KEY environment variable: config comes only from
        # build(). A missing key makes SendGrid answer 401 (a PermanentError), and check() reports it.
        self.client = SendGridAPIClient(api_key=api_key or "missing-api-key", host=host)
        # The SDK builds each request (URL, headers, JSON body) and opens a new connection for it, a TCP
        # (and TLS) handshake per email: its HTTP client is swapped for one that sends the same request
        # over a kept-alive connection of a pool, one per sending thread. The SDK has no timeout argument;
        # the client passes this one to every request.
        sdk = self.client.client
        self._pool, self._pool_pid = None, None
        self.client.client = _PooledClient(self.connections, host=sdk.host, request_headers=sdk.request_headers,
                                           version=sdk._version, timeout=timeout)

    def connections(self) -> urllib3.PoolManager:
        """This process's connection pool: a forked worker child opens its own (a connection its parent
        opened would be shared by both)."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = urllib3.PoolManager(maxsize=self.batch_concurrency, block=False, retries=False)
            self._pool_pid = os.getpid()
        return self._pool

    # --- the contract -----------------------------------------------------------------------------------

    def group_size_for(self, message: Message) -> int:
        """A batch for low-priority email (the channel hands over up to batch_size at once, one request);
        the thread pool's width for the rest, so transactional email keeps its circuit checks."""
        return self.batch_size if self._batchable(message) else self.batch_concurrency

    def send(self, message: Message) -> SendResult:
        """Send one email. Returns SendResult(provider_message_id=X-Message-Id) on 202, or raises
        PermanentError / TransientError / RateLimited as listed in the module docstring."""
        try:
            response = self.client.send(self.payload(message))
        except HTTPError as error:
            raise self._error_from_answer(error, message) from error
        except (OSError, http.client.HTTPException) as error:
            # URLError, ConnectionRefusedError and socket timeouts are OSErrors; a dropped connection
            # can also surface as http.client.RemoteDisconnected or BadStatusLine.
            logger.warning("SendGrid: connection failed for delivery %s: %s", message.delivery_id, error)
            raise TransientError(f"SendGrid unreachable: {error}", code="connection") from error

        message_id = _message_id(response)
        logger.log(sent_log_level(message), "SendGrid: sent to %s (delivery %s, message %s)", message.to,
                   message.delivery_id, message_id)
        return SendResult(provider_message_id=message_id)

    def send_as_completed(self, messages: list[Message]) -> Iterator[tuple[int, SendResult | ProviderError]]:
        """Low-priority messages in batches (one request each), then every other message on its own on the
        thread pool: the transactional ones, those that fit no batch, and those a refused batch hands back
        to be answered one by one."""
        batchable = [index for index, message in enumerate(messages) if self._batchable(message)]
        batchable_set = set(batchable)
        alone = [index for index in range(len(messages)) if index not in batchable_set]
        batches = []
        if len(batchable) > 1:
            try:
                batches, unbatched = self._batches_plan(messages, batchable)
            except Exception:  # a bug in planning must not stop the sends: they go the usual way
                logger.exception("SendGrid: could not plan batches for %d emails; sending each on its own",
                                 len(batchable))
                unbatched = batchable
            alone.extend(unbatched)
        else:
            alone.extend(batchable)
        for batch in batches:
            yield from self._batch_send(messages, batch, alone)
        alone.sort()
        for offset, outcome in super().send_as_completed([messages[index] for index in alone]):
            yield alone[offset], outcome

    # --- one message ------------------------------------------------------------------------------------

    def payload(self, message: Message) -> dict:
        """The Mail Send JSON body for one message (v3 format)."""
        payload = {
            "personalizations": [{"to": [{"email": message.to}], "custom_args": _custom_args(message)}],
            "from": self._sender(),
            "subject": message.subject,
            "content": [{"type": mime, "value": getattr(message, part)} for mime, part in _parts(message)],
            "headers": _headers(message),
        }
        categories = _categories(message)
        if categories:
            payload["categories"] = categories
        payload["tracking_settings"] = TRACKING_OFF
        return payload

    def _sender(self) -> dict:
        sender = {"email": self.from_email}
        if self.from_name:
            sender["name"] = self.from_name
        return sender

    # --- batches ----------------------------------------------------------------------------------------

    def _batchable(self, message: Message) -> bool:
        # A batch's subject goes in each personalization, where SendGrid wants at least one character; an
        # email without subject or content gets SendGrid's own answer on its own.
        return (self.batch_size > 1 and message.priority == "low" and bool(message.subject)
                and bool(message.body or message.html_body))

    def _batches_plan(self, messages: list[Message], indexes: list[int]) -> tuple[list[_Batch], list[int]]:
        """The batches the messages at `indexes` go out in, and the indexes of those that fit none.

        Messages of the same kind (categories, MIME parts) share a request. For each kind, a skeleton of
        the shared text is learnt from the first message left and a few others, and every message that
        fits it with substitutions under the limit joins; the rest try again with a skeleton of their own,
        TEMPLATE_ROUNDS times, and finally with their whole text as the substitution. Each group is then
        cut into requests by SendGrid's limits."""
        kinds: dict[tuple, list[int]] = {}
        for index in indexes:
            message = messages[index]
            kinds.setdefault((tuple(_categories(message)), _parts(message)), []).append(index)
        batches, unbatched = [], []
        for (_, parts), pending in kinds.items():
            fields = [part for _, part in parts]
            # SendGrid substitutes in the subject too: no tag may occur there either.
            nonce = _nonce_absent_from([getattr(messages[i], part) for i in pending for part in ("subject", *fields)])
            for round_number in range(TEMPLATE_ROUNDS + 1):
                if len(pending) < 2:
                    break
                if round_number < TEMPLATE_ROUNDS:
                    skeletons = {part: _skeleton_learnt([getattr(messages[i], part) for i in pending])
                                 for part in fields}
                else:
                    skeletons = {part: WHOLE for part in fields}
                fitted, left = [], []
                for index in pending:
                    personalization = self._personalization(messages[index], skeletons, nonce)
                    if personalization is not None:
                        fitted.append((index, personalization))
                    elif index == pending[0]:  # its own skeleton fits it: its substitutions are too big
                        unbatched.append(index)
                    else:
                        left.append(index)
                batches.extend(self._requests_cut(skeletons, nonce, fitted))
                pending = left
            unbatched.extend(pending)
        singles = [batch for batch in batches if len(batch.members) < 2]
        unbatched.extend(index for batch in singles for index, _ in batch.members)
        return [batch for batch in batches if len(batch.members) >= 2], unbatched

    def _personalization(self, message: Message, skeletons: dict, nonce: str) -> dict | None:
        """This message's personalization under these skeletons, or None when its text does not fit them
        or its substitutions would exceed MAX_SUBSTITUTION_BYTES."""
        substitutions = {}
        for part, skeleton in skeletons.items():
            values = skeleton_fill(skeleton, getattr(message, part))
            if values is None:
                return None
            substitutions.update(zip(_tags(nonce, part, skeleton), values))
        if substitutions_size(substitutions) > MAX_SUBSTITUTION_BYTES:
            return None
        personalization = {"to": [{"email": message.to}], "subject": message.subject,
                           "headers": _headers(message), "custom_args": _custom_args(message)}
        if substitutions:
            personalization["substitutions"] = substitutions
        return personalization

    def _requests_cut(self, skeletons: dict, nonce: str, fitted: list) -> list[_Batch]:
        """`fitted` (index, personalization) cut into requests: at most batch_size each, an address at most
        once in a request (SendGrid refuses a repeated one), at most MAX_REQUEST_BYTES of personalizations."""
        requests: list[_Batch] = []
        addresses: list[set] = []
        for index, personalization in fitted:
            address = personalization["to"][0]["email"].lower()
            size = request_size(personalization) + 2
            for batch, seen in zip(requests, addresses):
                fits = len(batch.members) < self.batch_size and batch.size + size <= MAX_REQUEST_BYTES
                if fits and address not in seen:
                    break
            else:
                batch, seen = _Batch(skeletons, nonce), set()
                requests.append(batch)
                addresses.append(seen)
            batch.members.append((index, personalization))
            batch.size += size
            seen.add(address)
        return requests

    def batch_payload(self, messages: list[Message], batch: _Batch, members: list) -> dict:
        """The Mail Send JSON body for `members` of `batch`: the shared content with its tags, the subject
        and headers every one of them has once at the top, the rest in each personalization."""
        first = messages[members[0][0]]
        personalizations = [dict(personalization) for _, personalization in members]
        subjects = {p["subject"] for p in personalizations}
        shared_headers = {name: value for name, value in personalizations[0]["headers"].items()
                          if all(p["headers"].get(name) == value for p in personalizations)}
        for personalization in personalizations:
            if len(subjects) == 1:
                del personalization["subject"]
            headers = {name: value for name, value in personalization["headers"].items() if name not in shared_headers}
            if headers:
                personalization["headers"] = headers
            else:
                del personalization["headers"]
        payload = {"personalizations": personalizations, "from": self._sender()}
        if len(subjects) == 1:
            payload["subject"] = next(iter(subjects))
        payload["content"] = [{"type": mime, "value": skeleton_template(batch.skeletons[part], batch.tags(part))}
                              for mime, part in _parts(first)]
        if shared_headers:
            payload["headers"] = shared_headers
        categories = _categories(first)
        if categories:
            payload["categories"] = categories
        payload["tracking_settings"] = TRACKING_OFF
        return payload

    def _batch_send(self, messages: list[Message], batch: _Batch, alone: list[int]
                    ) -> Iterator[tuple[int, SendResult | ProviderError]]:
        """Send one batch: yields an outcome for each member, or appends its index to `alone` when it is to
        be sent on its own (see the module docstring for how a refused batch is taken apart)."""
        members = batch.members
        for _ in range(MAX_ISOLATION_ROUNDS):
            try:
                response = self.client.send(self.batch_payload(messages, batch, members))
            except HTTPError as error:
                status = int(error.status_code)
                if status not in (400, 413):
                    failure = self._error_from_batch_answer(error, len(members))
                    for index, _ in members:
                        yield index, failure
                    return
                members = yield from self._refused_members_taken_out(messages, members, error, alone)
                if len(members) < 2:
                    alone.extend(index for index, _ in members)
                    return
                continue
            except (OSError, http.client.HTTPException) as error:
                logger.warning("SendGrid: connection failed for a batch of %d: %s", len(members), error)
                failure = TransientError(f"SendGrid unreachable: {error}", code="connection")
                for index, _ in members:
                    yield index, failure
                return
            except Exception as error:  # an SDK bug or an unexpected answer: retry rather than lose them
                logger.exception("SendGrid: unexpected error for a batch of %d", len(members))
                failure = TransientError(f"{type(error).__name__}: {error}", code="unexpected")
                for index, _ in members:
                    yield index, failure
                return
            result = SendResult(provider_message_id=_message_id(response))
            logger.info("SendGrid: sent a batch of %d emails (message %s)", len(members), result.provider_message_id)
            for index, _ in members:
                yield index, result
            return
        alone.extend(index for index, _ in members)

    def _refused_members_taken_out(self, messages, members: list, error: HTTPError, alone: list[int]):
        """A 400 or 413 for a batch: yields a PermanentError for each member whose address SendGrid says
        is invalid, moves to `alone` those refused for anything else about their personalization (a single
        send gives them its own answer), and returns the members to send again as a batch: none when an
        error names no personalization, or the answer lists none (each message is then sent on its own, to
        get its own answer)."""
        errors = _error_list(error.body)
        named: dict[int, list[dict]] = {}
        if not errors:
            errors = [{"message": f"HTTP {error.status_code} without SendGrid's error list", "field": None}]
        for item in errors:
            match = PERSONALIZATION_FIELD.match(item.get("field") or "")
            if match is None or int(match.group(1)) >= len(members):
                logger.warning("SendGrid: %s for a batch of %d, about no one personalization (%s): sending each "
                               "on its own", error.status_code, len(members), _error_text(errors, error.status_code))
                alone.extend(index for index, _ in members)
                return []
            named.setdefault(int(match.group(1)), []).append(item)
        for position, refusals in sorted(named.items()):
            index = members[position][0]
            if any(_names_invalid_recipient(item) for item in refusals):
                yield index, PermanentError(f"SendGrid refused the message: {_error_text(refusals, 400)}", code="400",
                                            target_gone=True)
                logger.warning("SendGrid: 400 for %s (delivery %s) in a batch: %s", messages[index].to,
                               messages[index].delivery_id, _error_text(refusals, 400))
            else:
                alone.append(index)
        return [member for position, member in enumerate(members) if position not in named]

    # --- errors -----------------------------------------------------------------------------------------

    def _error_from_answer(self, error: HTTPError, message: Message):
        status = int(error.status_code)
        errors = _error_list(error.body)
        logger.warning("SendGrid: %s for %s (delivery %s): %s", status, message.to, message.delivery_id,
                       _error_text(errors, status))
        return _error_of(status, errors, error.headers)

    def _error_from_batch_answer(self, error: HTTPError, count: int):
        status = int(error.status_code)
        errors = _error_list(error.body)
        logger.warning("SendGrid: %s for a batch of %d: %s", status, count, _error_text(errors, status))
        return _error_of(status, errors, error.headers)

    def check(self) -> list[str]:
        problems = []
        if not self.api_key:
            problems.append("SendGrid: no api_key configured")
        if not self.from_email:
            problems.append("SendGrid: no sender (from_email) configured")
        elif "@" not in self.from_email:
            problems.append(f"SendGrid: from_email {self.from_email!r} is not an email address")
        return problems

    def close(self) -> None:
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.clear()


class _PooledClient(python_http_client.Client):
    """python_http_client's Client (the SDK's HTTP layer: URL, headers, body, Response, the HTTPError
    classes) with its urllib request sent over a urllib3 connection pool, so a connection is reused
    rather than opened for every request. Connection failures and timeouts are raised as OSError, as
    urllib raises them, for the provider's error mapping."""

    def __init__(self, connections, **kwargs):
        super().__init__(**kwargs)
        self.connections = connections

    def _build_client(self, name=None):
        url_path = self._url_path + [name] if name else self._url_path
        return _PooledClient(self.connections, host=self.host, version=self._version, request_headers=self.request_headers,
                             url_path=url_path, append_slash=self.append_slash, timeout=self.timeout)

    def _make_request(self, opener, request, timeout=None):
        try:
            answer = self.connections().urlopen(request.get_method(), request.full_url, body=request.data,
                                       headers=dict(request.header_items()), timeout=timeout or self.timeout,
                                       redirect=False, preload_content=True)
        except urllib3.exceptions.HTTPError as error:  # refused, reset, timed out: what urllib raises as OSError
            raise ConnectionError(f"{type(error).__name__}: {error}") from error
        response = _Answer(answer)
        if answer.status >= 400:
            raise handle_error(urllib.error.HTTPError(request.full_url, answer.status, answer.reason,
                                                      response.info(), io.BytesIO(answer.data)))
        return response


class _Answer:
    """A urllib3 response as python_http_client's Response reads a urllib one."""

    def __init__(self, answer: urllib3.BaseHTTPResponse):
        self.answer = answer

    def getcode(self) -> int:
        return self.answer.status

    def read(self) -> bytes:
        return self.answer.data

    def info(self) -> http.client.HTTPMessage:
        headers = http.client.HTTPMessage()
        for name, value in self.answer.headers.items():
            headers[name] = value
        return headers


def _parts(message: Message) -> tuple:
    """The (MIME type, Message field) of each part of the email. SendGrid wants text/plain before
    text/html, and rejects empty content values."""
    parts = []
    if message.body or not message.html_body:
        parts.append(PARTS[0])
    if message.html_body:
        parts.append(PARTS[1])
    return tuple(parts)


def _custom_args(message: Message) -> dict:
    # custom_args values must be strings.
    return {"notification_id": str(message.notification_id), "delivery_id": str(message.delivery_id)}


def _headers(message: Message) -> dict:
    return {"X-Notification-ID": str(message.notification_id), **message.headers}


def _categories(message: Message) -> list[str]:
    return list(dict.fromkeys(c for c in (message.type_key, message.category) if c))


def _message_id(response) -> str:
    return response.headers.get("X-Message-Id", "") if response.headers else ""


def _skeleton_learnt(texts: list[str]) -> tuple[str, ...]:
    """The skeleton of the first text that the first TEMPLATE_SAMPLES texts differing from it share."""
    reference = texts[0]
    samples = []
    for text in texts[1:]:
        if text != reference:
            samples.append(text)
            if len(samples) == TEMPLATE_SAMPLES:
                break
    return skeleton_of(reference, samples)


def _tags(nonce: str, part: str, skeleton: tuple[str, ...]) -> list[str]:
    """The substitution tags of a skeleton's holes: "%nf3fa2c1d0h1%" is the html_body's first. No tag is the
    start of another (the closing % follows the number)."""
    return [f"%{nonce}{part[0]}{hole}%" for hole in range(1, len(skeleton))]


def _nonce_absent_from(texts: list[str]) -> str:
    """A random part for substitution tags that none of the texts contains, so that SendGrid replaces
    only our tags (it replaces every occurrence of a tag's text)."""
    while True:
        nonce = "nf" + secrets.token_hex(4)
        if not any(nonce in text for text in texts):
            return nonce


def _error_of(status: int, errors: list[dict], headers) -> ProviderError:
    """The error kind of one answer (module docstring)."""
    text = _error_text(errors, status)
    if status == 429:
        return RateLimited(f"SendGrid rate limit: {text}", retry_after=_retry_after(headers), code="429")
    if status >= 500:
        return TransientError(f"SendGrid server error: {text}", code=str(status))
    if status == 400:
        return PermanentError(f"SendGrid refused the message: {text}", code="400",
                              target_gone=any(_names_invalid_recipient(e) for e in errors))
    return PermanentError(f"SendGrid refused the request: {text}", code=str(status))


def _error_text(errors: list[dict], status) -> str:
    return "; ".join(e.get("message") or "" for e in errors) or f"HTTP {status}"


def _error_list(body) -> list[dict]:
    """SendGrid's {"errors": [{"message", "field", "help"}]} as a list, [] when the body is not that."""
    try:
        parsed = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (TypeError, ValueError, UnicodeDecodeError):
        return []
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _names_invalid_recipient(error: dict) -> bool:
    """True for SendGrid's "Does not contain a valid address." on a recipient's email field, and only
    then: an invalid sender or a malformed payload is our problem, not a dead address."""
    field = error.get("field") or ""
    text = (error.get("message") or "").lower()
    return bool(RECIPIENT_FIELD.match(field)) and "valid" in text


def _retry_after(headers) -> float | None:
    """Seconds to wait, from Retry-After (seconds or an HTTP date) or X-RateLimit-Reset (a Unix time)."""
    if headers is None:
        return None
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    return None


def build(config: dict) -> SendGridProvider:
    """A SendGridProvider from config keys api_key, from_email, from_name, host, timeout, batch_size."""
    return SendGridProvider(
        api_key=config.get("api_key") or "",
        from_email=config.get("from_email") or "",
        from_name=config.get("from_name") or "",
        host=config.get("host") or DEFAULT_HOST,
        timeout=float(config.get("timeout") or DEFAULT_TIMEOUT),
        batch_size=int(config.get("batch_size") or BATCH_MAX),
    )
