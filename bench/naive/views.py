"""The naive API (deliberately naive: see bench/naive/__init__.py): a row saved and a task per recipient
per channel, published inside the request."""
import json

from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from notifier.models import Notification, NotificationType, Producer, Recipient
from notifier.models.producers import hash_key


@csrf_exempt
def notifications_send(request):
    if request.method != "POST":
        return JsonResponse({"detail": "POST only"}, status=405)
    key = request.headers.get("Authorization", "").partition(" ")[2]
    producer = Producer.objects.filter(key_hash=hash_key(key), is_active=True).first()
    if producer is None:
        return JsonResponse({"detail": "bad key"}, status=401)
    body = json.loads(request.body)
    notification_type = NotificationType.objects.get(key=body["type"])
    user_ids = [r["user_id"] for r in body["recipients"]] if "recipients" in body else [body["user_id"]]
    channels = body.get("channels") or notification_type.default_channels
    from bench.naive.tasks import send_one

    answer = []
    for user_id in user_ids:
        recipient, _ = Recipient.objects.get_or_create(user_id=user_id)
        notification = Notification(producer=producer, type=notification_type, recipient=recipient,
                                    data=body.get("data", {}), channels=channels,
                                    priority=body.get("priority") or notification_type.default_priority,
                                    status="processing", due_at=timezone.now())
        notification.save()
        for channel in channels:
            send_one.delay(str(notification.id), channel)
        answer.append({"id": str(notification.id), "user_id": user_id})
    return JsonResponse({"notifications": answer}, status=202)
