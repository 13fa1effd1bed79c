"""Settings and glue to run the peers (django-push-notifications, django-notifications-hq) on the bench
database against the same fake provider servers. Installed only by requirements-bench.txt."""
