from django.urls import path

from notifier.webhooks import tracking

from . import campaigns, cancel, deadletters, inbox, preferences, stats, views

urlpatterns = [
    path("", views.ApiIndexView.as_view(), name="api-index"),
    path("notifications", views.NotificationCreateView.as_view(), name="notification-create"),
    path("notifications/cancel", cancel.NotificationCancelByKeyView.as_view(), name="notification-cancel-by-key"),
    path("notifications/<str:notification_id>", views.NotificationDetailView.as_view(), name="notification-detail"),
    path("notifications/<str:notification_id>/deliveries", views.NotificationDeliveryListView.as_view(),
         name="notification-deliveries"),
    path("notifications/<str:notification_id>/cancel", cancel.NotificationCancelView.as_view(), name="notification-cancel"),
    path("campaigns", campaigns.CampaignListView.as_view(), name="campaign-list"),
    path("campaigns/<str:campaign_id>", campaigns.CampaignDetailView.as_view(), name="campaign-detail"),
    path("campaigns/<str:campaign_id>/pause", campaigns.CampaignPauseView.as_view(), name="campaign-pause"),
    path("campaigns/<str:campaign_id>/resume", campaigns.CampaignResumeView.as_view(), name="campaign-resume"),
    path("campaigns/<str:campaign_id>/cancel", campaigns.CampaignCancelView.as_view(), name="campaign-cancel"),
    path("users/<str:user_id>", views.UserView.as_view(), name="user"),
    path("users/<str:user_id>/token", views.RecipientTokenView.as_view(), name="recipient-token"),
    path("users/<str:user_id>/notifications", inbox.InboxView.as_view(), name="inbox"),
    path("users/<str:user_id>/notifications/unread-count", inbox.InboxUnreadCountView.as_view(), name="inbox-unread"),
    path("users/<str:user_id>/notifications/mark-all-read", inbox.InboxMarkAllReadView.as_view(), name="inbox-read-all"),
    path("users/<str:user_id>/notifications/stream", inbox.InboxStreamView.as_view(), name="inbox-stream"),
    path("users/<str:user_id>/notifications/<str:notification_id>", inbox.InboxItemView.as_view(), name="inbox-item"),
    path("users/<str:user_id>/notifications/<str:notification_id>/events", inbox.NotificationEventView.as_view(),
         name="notification-events"),
    path("users/<str:user_id>/notification-preferences", preferences.NotificationPreferencesView.as_view(),
         name="notification-preferences"),
    path("users/<str:user_id>/preferences-link", preferences.PreferencesLinkView.as_view(), name="preferences-link"),
    path("users/<str:user_id>/topics", views.TopicListView.as_view(), name="topic-list"),
    path("users/<str:user_id>/topics/<str:topic>", views.TopicDetailView.as_view(), name="topic-detail"),
    path("users/<str:user_id>/devices", views.DeviceListView.as_view(), name="device-list"),
    path("users/<str:user_id>/devices/<str:token>", views.DeviceDetailView.as_view(), name="device-detail"),
    path("notification-types", views.NotificationTypeListView.as_view(), name="notification-type-list"),
    path("templates", views.TemplateListView.as_view(), name="template-list"),
    path("sandbox/messages", views.SandboxMessageListView.as_view(), name="sandbox-messages"),
    path("stats", stats.StatsView.as_view(), name="stats"),
    path("dead-letters", deadletters.DeadLetterListView.as_view(), name="dead-letter-list"),
    path("dead-letters/replay", deadletters.DeadLetterBulkReplayView.as_view(), name="dead-letter-bulk-replay"),
    path("dead-letters/<str:delivery_id>/replay", deadletters.DeadLetterReplayView.as_view(),
         name="dead-letter-replay"),
    # Public: a reader of an email reaches these without a key, by the signed token in the URL.
    path("unsubscribe/<str:token>", tracking.unsubscribe, name="unsubscribe"),
    path("t/o/<str:token>.gif", tracking.open_pixel, name="track-open"),
    path("t/c/<str:token>", tracking.click_redirect, name="track-click"),
]
