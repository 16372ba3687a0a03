"""What sources tell the cluster store: upserts, deletes, relist results and "synced".

Sources know nothing about DNS; they hand batches of these events to a sink,
always on the event-loop thread (a threaded source uses
``loop.call_soon_threadsafe``).  A batch is applied as one unit, so a reader
never sees half of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from .objects import Key, KubeObject


@dataclass(frozen=True, slots=True)
class Upsert:
    obj: KubeObject


@dataclass(frozen=True, slots=True)
class Delete:
    key: Key


@dataclass(frozen=True, slots=True)
class Replace:
    """A fresh list of one kind: these objects are now all there is of ``kind``."""

    kind: str
    objects: tuple[KubeObject, ...]


@dataclass(frozen=True, slots=True)
class Synced:
    """The source has delivered its first complete state of ``kind``."""

    kind: str


Event = Upsert | Delete | Replace | Synced
Sink = Callable[[Sequence[Event]], None]
