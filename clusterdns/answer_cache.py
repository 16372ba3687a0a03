"""The pre-encoded answers the server replays, and which zone names each one read.

One object owns both tiers and the index, so an answer leaves all three together:

* ``exact``: by the transport and the query's bytes after the ID.  A repeat is
  answered by replaying the stored bytes with the new ID: one dict lookup.
* ``by_question``: by the normalised question (lower-cased name, type, class
  and the header/EDNS bits that change the answer).  A hit splices the new
  query's ID and question (which carries the client's letter case) into the
  stored bytes.
* the index: zone name → the keys of the answers that read it.  When the zone
  reports a name changed, exactly those answers are dropped.

Both tiers are LRUs of ``size`` entries.  When one evicts an entry, its keys
leave the index too, so nothing here grows with the number of distinct queries:
under a flood of unique names memory stays near ``2 × size`` entries (see
docs/benchmark.md for the measured bytes per entry).

Answers that are cheap to build again (the negatives encoded from the query's
bytes) are kept only when their key comes a second time (:meth:`AnswerCache.admit`,
TinyLFU's "doorkeeper"): names asked once each, as in a random-subdomain flood,
then cost no entry and evict none of the answers that are asked again and again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Union

from .loadbalance import Plan

ExactKey = tuple[bool, bytes]  # (over UDP?, query bytes after the ID)
Key = Union[ExactKey, bytes]
Names = tuple[str, ...]


SEEN_BITS = 1 << 20  # the admission filter: one bit per key hash, 128 KB
SEEN_MARKS = SEEN_BITS // 8  # bits set before it starts afresh: at most 1 in 8 keys is taken for seen wrongly


class _Tier(OrderedDict):
    """An LRU whose evictions also leave the cache's index."""

    def __init__(self, cache: "AnswerCache", size: int):
        super().__init__()
        self.cache = cache
        self.size = size

    def put(self, key, value) -> None:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)

    def popitem(self, last: bool = True):
        key, value = super().popitem(last)
        self.cache._unindex(key, value[-1])
        return key, value


class AnswerCache:
    """Two LRU tiers of encoded answers, and the index of the names they read."""

    def __init__(self, size: int = 100_000):
        self.size = size
        # (udp, query[2:]) → (response[2:], qtype, rcode, rotation plan, names read): a replay adds the query's ID
        self.exact: _Tier = _Tier(self, size)
        # normalised question → (response, rotation plan, names read); plans: loadbalance.py
        self.by_question: _Tier = _Tier(self, size)
        # name → the key reading it, or a set of keys when several do (most names have one)
        self._index: dict[str, Key | set[Key]] = {}
        self._seen = bytearray(SEEN_BITS // 8)
        self._marks = 0

    def __len__(self) -> int:
        return len(self.by_question)

    def index_size(self) -> int:
        return len(self._index)

    def clear(self) -> None:
        self.exact.clear()  # OrderedDict.clear: no popitem calls, the index is cleared below
        self.by_question.clear()
        self._index.clear()

    # ------------------------------------------------------------------ storing

    def admit(self, key: Key) -> bool:
        """Has ``key`` been offered before (lately)?  It is marked now either way.

        For answers worth keeping only when asked again.  A false "yes" (two
        keys sharing a bit) only keeps one answer more; the bits start afresh
        after SEEN_MARKS new keys, so the filter holds no more than that.
        """
        bit = hash(key) & (SEEN_BITS - 1)
        seen = self._seen
        byte, mask = bit >> 3, 1 << (bit & 7)
        if seen[byte] & mask:
            return True
        seen[byte] |= mask
        self._marks += 1
        if self._marks >= SEEN_MARKS:
            self._seen = bytearray(SEEN_BITS // 8)
            self._marks = 0
        return False

    def keep_exact(self, key: ExactKey, response: bytes, qtype: int, plan: Plan | None, names: Names) -> None:
        if key in self.exact:
            self._unindex(key, self.exact[key][-1])
        self.exact.put(key, (response[2:], qtype, response[3] & 0x0F, plan, names))
        self._index_add(key, names)

    def keep_question(self, key: bytes, response: bytes, plan: Plan | None, names: Names) -> None:
        if key in self.by_question:
            self._unindex(key, self.by_question[key][-1])
        self.by_question.put(key, (response, plan, names))
        self._index_add(key, names)

    # ------------------------------------------------------------------ dropping

    def forget(self, names: Iterable[str] | None) -> None:
        """Drop every answer that read one of ``names`` (None: all of them)."""
        if names is None:
            self.clear()
            return
        index = self._index
        for name in names:
            readers = index.pop(name, None)
            if readers is None:
                continue
            for key in readers if isinstance(readers, set) else (readers,):
                tier = self.exact if isinstance(key, tuple) else self.by_question
                entry = tier.pop(key, None)
                if entry is not None:
                    self._unindex(key, entry[-1], skip=name)

    def _index_add(self, key: Key, names: Names) -> None:
        index = self._index
        for name in names:
            readers = index.get(name)
            if readers is None:
                index[name] = key
            elif isinstance(readers, set):
                readers.add(key)
            elif readers != key:
                index[name] = {readers, key}

    def _unindex(self, key: Key, names: Names, skip: str | None = None) -> None:
        index = self._index
        for name in names:
            if name == skip:
                continue
            readers = index.get(name)
            if readers is None:
                continue
            if isinstance(readers, set):
                readers.discard(key)
                if len(readers) == 1:
                    index[name] = next(iter(readers))
                elif not readers:
                    del index[name]
            elif readers == key:
                del index[name]
