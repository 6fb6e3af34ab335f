"""At most once an interval per key, in this process: the watched-job marks and Batch's own counts
beside ours both need it, so each costs its storage or Batch call rarely however often it is asked."""

from __future__ import annotations


class Throttle:
    def __init__(self) -> None:
        self._last: dict[str, float] = {}  # key -> when it was last let through (seconds, any clock)

    def admit(self, key: str, now: float, interval: float) -> bool:
        """Whether ``key`` may go now; if so, ``now`` is remembered as its last time."""
        last = self._last.get(key)
        if last is not None and now - last < interval:
            return False
        self._last[key] = now
        return True

    def forget(self, key: str) -> None:
        self._last.pop(key, None)
