"""Log a repeating problem once per burst, with a count (CoreDNS's ``errors { consolidate }``).

A fault that hits every packet (a dead upstream, a bug on one query shape) must
not write a line per packet: the first occurrence of a kind is logged at once,
later ones within ``interval`` are only counted, and the count is logged when
the interval ends (on the next occurrence, or by :meth:`BurstLog.flush`, which
the server calls periodically so a burst that stops is still reported, and
once more at shutdown with ``everything=True`` so no count is lost).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Hashable

DEFAULT_INTERVAL = 30.0  # seconds, as CoreDNS's `errors { consolidate 30s ... }` in common Corefiles


@dataclass
class _Burst:
    started: float
    message: str
    count: int = 0  # occurrences after the first one logged


class BurstLog:
    """``report(key, message)``: the first in a burst is logged, the rest are counted."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_INTERVAL,
        level: int = logging.ERROR,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger = logger
        self.interval = interval
        self.level = level
        self.clock = clock
        self._bursts: dict[Hashable, _Burst] = {}

    def report(self, key: Hashable, message: str, exc_info: bool = False) -> None:
        now = self.clock()
        burst = self._bursts.get(key)
        if burst is not None and now - burst.started < self.interval:
            burst.count += 1
            burst.message = message
            return
        if burst is not None:
            self._summarise(burst, now)
        self._bursts[key] = _Burst(now, message)
        # A traceback at most once per burst, so a bug is still diagnosable.
        self.logger.log(self.level, "%s", message, exc_info=exc_info)

    def flush(self, everything: bool = False) -> None:
        """Log the counts of bursts whose interval is over, or of all of them (and forget them)."""
        now = self.clock()
        for key, burst in list(self._bursts.items()):
            if everything or now - burst.started >= self.interval:
                self._summarise(burst, now)
                del self._bursts[key]

    def _summarise(self, burst: _Burst, now: float) -> None:
        if burst.count:
            self.logger.log(
                self.level, "%d more like this in the last %.0fs; latest: %s",
                burst.count, now - burst.started, burst.message,
            )
