"""Django's PostgreSQL backend, with one change: the health check of a kept connection (CONN_HEALTH_CHECKS)
looks at the socket instead of sending `SELECT 1`.

Django checks a kept connection before each request's first query, so that a connection the server has
ended (a restart, a failover, pg_terminate_backend) is replaced instead of failing the request. Its check is
a round trip, on every request: a tenth of a POST /api/v1/notifications' CPU, and a wait. A server that ends
a session writes its goodbye (an ErrorResponse, "terminating connection due to administrator command") and
closes the socket, so an idle connection that has nothing to read is one the server still holds. Only when
there is something to read (that goodbye, a notice, a parameter change), or the connection is not idle, is
Django's own `SELECT 1` asked. A connection lost without a word (a cable cut) passes here as it passes
`SELECT 1`'s first moments: the query then fails, and Django closes the connection at the request's end.
"""
import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self):
        connection = self.connection
        if connection is None or connection.closed or connection.pgconn.status != pq.ConnStatus.OK:
            return False
        if connection.info.transaction_status != pq.TransactionStatus.IDLE:
            return super().is_usable()
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return super().is_usable() if readable else True
