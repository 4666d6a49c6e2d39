"""Per-key request rates: a token bucket per API key, in this process (one API process per
deployment; several would each allow the rate)."""

from __future__ import annotations

import threading
import time


class RateLimits:
    """A token bucket per API key (in this process): `rate` requests per second, bursts of 2 × rate."""

    def __init__(self, rate: float) -> None:
        self.rate, self.burst = rate, 2 * rate
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def wait_seconds(self, key_id: str) -> float:
        """0 if the request may go now (and it is counted), else how long until it may."""
        with self.lock:
            now = time.monotonic()
            tokens, stamp = self.buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            if tokens >= 1:
                self.buckets[key_id] = (tokens - 1, now)
                return 0.0
            self.buckets[key_id] = (tokens, now)
            return (1 - tokens) / self.rate
