"""django-notifications-hq as an app would run it, for the inbox scenario (bench/scenarios/inbox.py): a tiny
Django project on its own database, run from its own virtualenv (Django 5.0, see
bench/peers/requirements-notifications-hq.txt).

    settings.py  the project (startproject's middleware, the library's app, DATABASE_URL)
    views.py     GET /inbox/<username>: the 20 newest notifications and the unread count, as JSON
    seed.py      the library's migrations, then users and notifications made inside PostgreSQL
"""
