"""Settings and glue to run the peers on the bench data. django-push-notifications (settings.py,
push_send.py) shares the bench database and the fake provider servers, installed by requirements-bench.txt.
django-notifications-hq (notifications_hq/) has its own database and virtualenv, since it needs Django 5.0
(requirements-notifications-hq.txt)."""
