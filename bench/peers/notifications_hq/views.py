"""What an app's inbox page asks django-notifications-hq for: the user's 20 newest notifications and the
unread badge, as JSON.

The user comes from the URL by username: one query on auth_user's unique index, the same user lookup Django's
session authentication makes per request (minus the session row: a database session costs one query more).
notifier reads with a recipient token, a signed value that costs no query. No access check beyond that.

Each notification is serialized as the library's own JSON views do (notifications.helpers.
get_notification_list: model_to_dict, slug, data) except that the generic relations (actor, target,
action_object) are not rendered with str(): that would cost one query per notification, and notifier's
payload has no equivalent. So the peer does no more work per item than notifier does.
"""
from django.contrib.auth import get_user_model
from django.forms import model_to_dict
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from notifications.utils import id2slug

PAGE = 20


def inbox(request, username):
    user = get_object_or_404(get_user_model(), username=username)
    page = []
    for notification in user.notifications.all()[:PAGE]:  # Meta.ordering: newest first (-timestamp)
        struct = model_to_dict(notification)
        struct["slug"] = id2slug(notification.id)
        if notification.data:
            struct["data"] = notification.data
        page.append(struct)
    return JsonResponse({"notifications": page, "unread_count": user.notifications.unread().count()})
