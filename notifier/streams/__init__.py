"""The stream server: the live inbox's Server-Sent Events (GET /api/v1/users/{user_id}/notifications/stream)
on asyncio, so that an open stream costs memory, not one of the API server's threads.

    uvicorn notifier.streams.asgi:app        (the Procfile's `stream` line; docker-compose's `stream` service)

- asgi.py: the ASGI app. It serves that one path (and /healthz); everything else stays on the API's server.
- hub.py: one Redis connection per process, subscribed to the channels of the streams open in it.

What a stream says and when (auth, replay, the badge, heartbeats, its end) is decided by the same functions
the API's InboxStreamView uses (notifier/api/inbox.py, "the stream's rules"). docs/architecture.md, "The
live inbox", has the why; README "The stream server" says how a request reaches it and what to configure.
"""
