"""Give freed heap memory back to the operating system after a big load.

Loading a cluster parses far more than it keeps (YAML documents, API list
pages), and glibc's allocator keeps the freed pages mapped: after loading
10,000 Services the process stays ~20 MB above what it holds.  ``malloc_trim``
returns them, so RSS (what a memory limit and the CoreDNS sizing rule count)
reflects the live state.  A no-op where glibc is not the C library.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
from typing import Iterator


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No garbage-collector passes while a big load builds long-lived state.

    Each pass walks every container the process holds, and a 10,000-Service
    load triggers several while its heap grows: ~10% of the load's time spent
    finding no garbage.  Loading makes little cyclic garbage; the caller
    collects once afterwards (:func:`release`).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def release() -> None:
    """Collect garbage, then hand freed pages back (call after a load, never per query)."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
