"""How the watch source talks to the API server: one value, from the command line to every stream.

Kept apart from :mod:`.kube_watch` so the command line can read the defaults
without importing the kubernetes client.
"""

from __future__ import annotations

from dataclasses import dataclass


# Restart reasons that mean the API server could not be reached or did not answer.
UNREACHABLE = ("disconnected", "unresponsive")
# ...and those that count as lost contact (an unusable stream too; 401/403/429 come from an API that is there).
CONTACT_LOST = (*UNREACHABLE, "error")


@dataclass(frozen=True)
class WatchOptions:
    page_size: int = 500  # objects per list page
    # A watch that has sent nothing for this long gets a cheap request of its own to the API
    # server (a list with limit=1).  An answer means the watch is just quiet (a real apiserver
    # sends a new watch's first bookmark only once the resource changes); no answer means the
    # API server is hung, which counts as lost contact.  --watch-inactivity-timeout.
    inactivity_timeout: float = 75.0
    probe_timeout: float = 5.0  # that request must answer within this
    probe_while_down: float = 0.5  # seconds between probes while streams wait to reconnect
    request_timeout: float = 30.0  # a list page must answer within this
    connect_timeout: float = 10.0
    backoff_base: float = 0.25
    max_backoff: float = 10.0
    max_retry_after: float = 60.0
    # The server ends each watch after a random 5-10 minutes (as client-go asks), which
    # spreads reconnects of many replicas over time.
    watch_timeout: tuple[int, int] = (300, 600)
    # A watch still open this long past its timeoutSeconds was ended by the server and the
    # end lost on the way (a proxy): restart it.
    stall_margin: float = 60.0
