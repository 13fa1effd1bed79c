"""django-push-notifications: one notification to every device of some users, as its docs show
(`GCMDevice.objects.filter(user__in=…).send_message(...)`), FCM through firebase-admin, against the fake FCM.

    DJANGO_SETTINGS_MODULE=bench.peers.settings python -m bench.peers.push_send --seed N --devices-per-user K
    DJANGO_SETTINGS_MODULE=bench.peers.settings python -m bench.peers.push_send --send --credentials F --endpoint URL

prints JSON: {"seconds", "success", "failure"}.
"""
import argparse
import json
import time

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402


def seed(users: int, per_user: int, prefix: str) -> None:
    from push_notifications.models import GCMDevice

    call_command("migrate", verbosity=0)
    # Counted by the users' prefix: each scenario seeds a pool of its own (push-u…, cpush-u…).
    devices = GCMDevice.objects.filter(user__username__startswith=prefix)
    if devices.count() == users * per_user:
        return
    devices.delete()
    User.objects.bulk_create([User(username=f"{prefix}{i}") for i in range(users)], ignore_conflicts=True,
                             batch_size=5000)
    ids = dict(User.objects.filter(username__startswith=prefix).values_list("username", "id"))
    GCMDevice.objects.bulk_create(
        [GCMDevice(name=f"bench-{prefix}{i}-{k}", user_id=ids[f"{prefix}{i}"],
                   registration_id=token(i, k, prefix), cloud_message_type="FCM")
         for i in range(users) for k in range(per_user)],
        batch_size=5000,
    )


def token(user: int, device: int, prefix: str) -> str:
    """The device tokens notifier's seed gives the same users (bench/tokens.py), so both send to the same
    registration ids: the push scenario's push-u… users, the campaign's camp-u… users (cpush-u… here)."""
    from bench.tokens import campaign_push_token, push_token

    return campaign_push_token(user) if prefix == "cpush-u" else push_token(user, device)


def send(credentials: str, endpoint: str, prefix: str) -> dict:
    import firebase_admin
    from firebase_admin import credentials as fb_credentials
    from firebase_admin import messaging
    from push_notifications.models import GCMDevice

    app = firebase_admin.initialize_app(fb_credentials.Certificate(credentials))
    service = messaging._get_messaging_service(app)
    # The same redirection notifier's adapter makes (the send URL is fixed inside firebase-admin).
    service._fcm_url = service._fcm_url.replace("https://fcm.googleapis.com", endpoint, 1)
    started = time.perf_counter()
    response = GCMDevice.objects.filter(user__username__startswith=prefix).send_message(
        "Order 789 ships with UPS.", title="Order shipped", extra={"order_id": "789"})
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "success": response.success_count, "failure": response.failure_count}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--devices-per-user", type=int, default=4)
    parser.add_argument("--send", action="store_true")
    parser.add_argument("--credentials", default="")
    parser.add_argument("--endpoint", default="")
    parser.add_argument("--prefix", default="push-u")
    args = parser.parse_args()
    if args.seed:
        seed(args.seed, args.devices_per_user, args.prefix)
        print(json.dumps({"seeded": args.seed * args.devices_per_user}))
    if args.send:
        print(json.dumps(send(args.credentials, args.endpoint, args.prefix)))


if __name__ == "__main__":
    main()
