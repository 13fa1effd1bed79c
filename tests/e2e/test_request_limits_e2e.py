"""The body limit on a real granian, over raw sockets: a declared length over the limit is refused before
the body is sent, a chunked body (no length declared) is read up to the limit + 1 byte and no further, and
a chunked body within the limit is read like any other."""
import socket
import time
from urllib.parse import urlparse

import orjson
import pytest

from notifier.models import Notification

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LIMIT = 64 * 1024
ORDER = {"type": "order_shipped", "user_id": "u_42", "data": {"order_id": "1"}}


def exchange(url, head: str, body_parts=(), timeout=5.0) -> tuple[str, float]:
    """Send a request head, then each body part (stopping if the server has answered and closed), and
    return the response's status line and how long the answer took."""
    address = urlparse(url)
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode(), time.monotonic() - started


def head(producer, length_header: str) -> str:
    return (f"POST /api/v1/notifications HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {producer.key}\r\n"
            f"Content-Type: application/json\r\n{length_header}\r\n\r\n")


def chunked(body: bytes, size=16 * 1024):
    for start in range(0, len(body), size):
        part = body[start:start + size]
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield b"0\r\n\r\n"


def test_a_declared_length_over_the_limit_is_refused_before_the_body_arrives(producer, order_type, start_api):
    server = start_api(NOTIFIER_MAX_REQUEST_BYTES=LIMIT)

    # 30 MB declared, nothing sent: the answer cannot wait for the body.
    status, took = exchange(server.url, head(producer, f"Content-Length: {30 * 1024 * 1024}"))

    assert status.startswith("HTTP/1.1 413 ") and took < 2  # the reason phrase is the server's own


def test_a_chunked_body_over_the_limit_is_a_413(producer, order_type, start_api):
    server = start_api(NOTIFIER_MAX_REQUEST_BYTES=LIMIT)
    body = orjson.dumps({**ORDER, "data": {"order_id": "1", "blob": "x" * (4 * LIMIT)}})

    status, _ = exchange(server.url, head(producer, "Transfer-Encoding: chunked"), chunked(body))

    assert status.startswith("HTTP/1.1 413")
    assert not Notification.objects.exists()


def test_a_chunked_body_within_the_limit_is_accepted(producer, order_type, reachable_user, start_api):
    server = start_api(NOTIFIER_MAX_REQUEST_BYTES=LIMIT)

    status, _ = exchange(server.url, head(producer, "Transfer-Encoding: chunked"), chunked(orjson.dumps(ORDER), 8))

    assert status.startswith("HTTP/1.1 202")
    assert Notification.objects.get().data == {"order_id": "1"}
