"""Per-subject rate limits (OWASP API4), answered with 429 and Retry-After.

The counters live in PostgreSQL (`rate_limit_hit`, migration d4e6b0c1a2f9), not in a process: with
`maillage serve --workers N`, or several servers behind a load balancer, a subject's limit is one limit
however its requests are spread. A hit is one statement on a connection the request already holds
(the reader's), so it costs a round trip, on writes, token requests and statistics only.
"""

import math
from datetime import timedelta

from psycopg import AsyncConnection

from .errors import RateLimited
from .metrics import RATE_LIMIT_REFUSALS

WINDOW = timedelta(minutes=1)


class RateLimiter:
    def __init__(self, per_minute: int, *, scope: str) -> None:
        self.per_minute = per_minute
        self.scope = scope

    async def hit(self, conn: AsyncConnection, key: str) -> None:
        """Count a request of `key`, or refuse it (429) without counting it."""
        row = await (
            await conn.execute("SELECT rate_limit_hit(%s, %s, %s, %s)", (self.scope, key, self.per_minute, WINDOW))
        ).fetchone()
        wait = row[0] if row else 0.0
        if not wait:
            return
        RATE_LIMIT_REFUSALS.labels(scope=self.scope).inc()
        retry_after = max(1, math.ceil(wait))
        raise RateLimited(
            f"more than {self.per_minute} {self.scope} requests a minute: retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
