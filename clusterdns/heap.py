"""Give freed heap memory back to the operating system after a big load.

Loading a cluster parses far more than it keeps (YAML documents, API list
pages), and glibc's allocator keeps the freed pages mapped: after loading
10,000 Services the process stays ~20 MB above what it holds.  ``malloc_trim``
returns them, so RSS (what a memory limit and the CoreDNS sizing rule count)
reflects the live state.  A no-op where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release() -> None:
    """Collect garbage, then hand freed pages back (call after a load, never per query)."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
