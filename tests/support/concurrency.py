"""Two workers recording the last outcomes of one notification at the same moment, each before the other
has committed: the interleaving a real beat tick produced (two held deliveries released together)."""
import threading

from django.db import connections, transaction

from notifier.models import Delivery
from notifier.pipeline.dispatch import notifications_refresh_status


def record_at_once(notification, deliveries, **outcome) -> None:
    """In one thread per delivery: write `outcome` (field values) on it, wait until every thread has written
    (none has committed), then close the notification as the deliver step does. Raises what a thread raised."""
    all_written = threading.Barrier(len(deliveries), timeout=10)
    errors = []

    def record(delivery):
        try:
            with transaction.atomic():
                Delivery.objects.filter(id=delivery.id).update(**outcome)
                all_written.wait()  # none has committed: each sees the others' as in flight
                notifications_refresh_status({notification.id})
        except Exception as error:  # raised below: an assertion in a thread would be lost
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=record, args=(delivery,)) for delivery in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]
