"""Per-subject rate limits (OWASP API4), answered with 429 and Retry-After.

Counters live in this process (a moving window from the `limits` library): with several workers each
counts its own share; a shared store (Redis) is the next step when one worker is not enough.
"""

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from .errors import RateLimited


class RateLimiter:
    def __init__(self, per_minute: int, *, scope: str) -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.scope = scope
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, key: str) -> None:
        if await self._limiter.hit(self.item, self.scope, key):
            return
        stats = await self._limiter.get_window_stats(self.item, self.scope, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"more than {self.item.amount} {self.scope} requests a minute: retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
