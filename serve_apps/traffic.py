"""A canary's share of the traffic: which of a replica's two versions answers each request.

Each replica sends exactly ``percent`` of every hundred requests it answers to the canary, spread
evenly (the n-th request goes to the canary when ``n * percent / 100`` passes a whole number), so
the split holds over a few hundred requests instead of drifting as a coin toss would, and a
deployment of several replicas splits as each of them does.
"""

from __future__ import annotations

import threading
from fractions import Fraction

CHAMPION, CANARY = "champion", "canary"


class TrafficSplit:
    """Counts the requests of one replica and says who answers the next."""

    def __init__(self, percent: float) -> None:
        if not 0 <= percent <= 100:
            raise ValueError(f"a canary's share is a percentage in [0, 100], got {percent}")
        self.share = Fraction(str(percent)) / 100
        self.answered = {CHAMPION: 0, CANARY: 0}
        self._lock = threading.Lock()

    def next(self) -> str:
        """``canary`` or ``champion``, for the next request (and counted as answered by it)."""
        with self._lock:
            count = self.answered[CHAMPION] + self.answered[CANARY] + 1
            per, out_of = self.share.numerator, self.share.denominator  # whole numbers: cheap
            steps = count * per // out_of > (count - 1) * per // out_of
            version = CANARY if steps else CHAMPION
            self.answered[version] += 1
            return version
