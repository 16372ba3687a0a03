"""Reload a Corefile as CoreDNS's ``reload`` plugin does: validate, then apply; keep what did not change.

:class:`CorefileReloader` re-reads the Corefile every ``reload`` interval (with
jitter), and at once when :meth:`~CorefileReloader.force` is called (SIGUSR1).
What it compares is the Corefile's tokens with the files they came from, so a
change in an imported file (k3s's ``custom/*.override``, a new ``*.server``)
counts too.  A changed Corefile is loaded in full first; if it has errors, they
are logged and the running configuration stays.  Otherwise a new
:class:`~clusterdns.serving.Serving` is built beside the running one: its zone
is loaded or synced with the API (a changed kubeconfig or filter means a new
watch), and only then does it take the listeners over, so no query meets an
empty zone.  Listeners the new Corefile still names stay open; the old
sources stop last.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable

from . import config as corefile_config
from .corefile import CorefileError, Token, parse_file
from .serving import ListenError, NotSynced, ServeOptions, Serving
from .sources import KubeConfigError

log = logging.getLogger("clusterdns")

Prepare = Callable[[corefile_config.Config], ServeOptions]


def fingerprint(path: str) -> tuple | None:
    """What the Corefile says, imports included; None if it cannot be parsed (load() will say why)."""
    try:
        blocks = parse_file(path)
    except CorefileError:
        return None
    return tuple(_token_texts(blocks))


def _token_texts(blocks):
    for block in blocks:
        yield ("keys", *(k.text for k in block.keys))
        yield from _directive_texts(block.directives)


def _directive_texts(directives):
    for d in directives:
        yield (d.token.file, d.token.line, d.name, *(_text(a) for a in d.args))
        if d.block is not None:
            yield "{"
            yield from _directive_texts(d.block)
            yield "}"


def _text(token: Token) -> str:
    return token.text


class CorefileReloader:
    """Owns the running :class:`Serving` of a Corefile and swaps it when the Corefile changes."""

    def __init__(self, serving: Serving, config: corefile_config.Config, prepare: Prepare):
        self.serving = serving
        self.config = config
        self.prepare = prepare  # Config → ServeOptions (the command line's relocations and overrides)
        self.path = config.path
        self.applied = fingerprint(self.path)
        self.reloads = 0  # configurations applied since start
        self.failures = 0  # changed Corefiles refused (errors, or a zone that would not sync)
        self._forced = asyncio.Event()
        self._lock = asyncio.Lock()

    def force(self) -> None:
        """Check the Corefile now (SIGUSR1)."""
        self._forced.set()

    def _interval(self) -> float | None:
        if self.config.reload is None:
            return None  # no reload plugin: only SIGUSR1 reloads, as in CoreDNS
        interval, jitter = self.config.reload
        return max(0.1, interval + random.uniform(-jitter, jitter))

    async def run(self, stop: asyncio.Event) -> None:
        """Check on every interval or force() until ``stop``."""
        while not stop.is_set():
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._forced.wait())]
            try:
                await asyncio.wait(waiters, timeout=self._interval(), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            self._forced.clear()  # after waking: a force() that came before the wait is not lost
            if not stop.is_set():
                await self.check()

    async def check(self) -> bool:
        """Reload if the Corefile changed; True if a new configuration was applied."""
        async with self._lock:
            current = fingerprint(self.path)
            if current is not None and current == self.applied:
                return False
            try:
                config = corefile_config.load(self.path)
                options = self.prepare(config)
            except corefile_config.ConfigErrors as exc:
                self.failures += 1
                for error in exc.errors:
                    log.error("reload: %s", error)
                log.error("reload: %s has %d error(s); keeping the running configuration", self.path, len(exc.errors))
                self.applied = current  # report a bad version once, not on every tick
                return False
            log.info("reload: %s changed; starting the new configuration beside the running one", self.path)
            new = Serving(options, metrics=self.serving.metrics)
            try:
                await new.start(take_over=self.serving)
            except (NotSynced, ListenError, KubeConfigError) as exc:
                self.failures += 1
                await new.close()
                log.error("reload: %s; keeping the running configuration", exc)
                self.applied = current
                return False
            old, self.serving, self.config, self.applied = self.serving, new, config, current
            await old.close()  # its sources and tasks; the listeners are the new one's now
            self.reloads += 1
            assert new.dns_server is not None  # start() took over the listeners
            log.info("reload: applied %s (listeners %s)", self.path,
                     ", ".join(f"{h}:{p}" for h, p in new.dns_server.addresses))
            return True
