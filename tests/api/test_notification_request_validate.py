"""POST /api/v1/notifications is checked by notification_request_validate, one serializer per process: it
answers exactly what a serializer made for the request answers (the rules exist once, in the serializer
that documents them), and threads may share it."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework import serializers

from notifier.api.serializers import NotificationRequestSerializer, notification_request_validate

BODIES = [
    None,
    [],
    {},
    {"type": "order_shipped"},
    {"type": "nope", "user_id": "u 1", "channels": ["fax"], "priority": "urgent", "extra": 1},
    {"type": "order_shipped", "recipients": [{"user_id": "a", "phone": "123"}, {"user_id": "a"}], "data": []},
    {"type": "order_shipped", "user_id": "u_1", "escalate": {"channels": ["email"], "if_unread_after_seconds": "6"}},
]


def serializer_answer(body):
    serializer = NotificationRequestSerializer(data=body)
    if serializer.is_valid():
        return "valid", serializer.validated_data
    return "invalid", serializer.errors


def function_answer(body):
    try:
        return "valid", notification_request_validate(body)
    except serializers.ValidationError as error:
        return "invalid", error.detail


@pytest.mark.parametrize("body", BODIES)
def test_it_answers_as_a_serializer_of_the_request_does(order_type, body):
    expected = serializer_answer(body)

    assert function_answer(body) == expected
    assert expected[0] == "invalid"


def test_a_valid_body_gives_the_same_request(order_type):
    body = {"type": "order_shipped", "recipients": [{"user_id": "a", "data": {"order_id": "1"}}],
            "data": {"order_id": "2"}, "channels": ["push", "in_app"], "idempotency_key": "k"}

    assert function_answer(body) == serializer_answer(body)


def test_threads_share_it(order_type):
    bodies = [{"type": "order_shipped", "user_id": f"u_{n}", "data": {"order_id": str(n)}} for n in range(200)]
    bodies += [{"type": "order_shipped", "user_id": f"bad user {n}"} for n in range(200)]
    function_answer(bodies[0])  # the type cached: the threads' own connections are outside this test's transaction

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(function_answer, bodies))

    assert answers == [serializer_answer(body) for body in bodies]
