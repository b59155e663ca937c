"""Giving freed memory back to the operating system (glibc only).

Large requests (2048² images, several at once) allocate tens of megabytes in
worker threads. glibc keeps freed memory in per-thread arenas and returns it to
the system only when asked, so without help the server's resident size stays at
its highest point and creeps up with each round of large requests (measured with
``bench/memory.py``; see docs/performance.md). On other C libraries these
functions do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache

import structlog

log = structlog.get_logger("mcp_imagegen._memory")

#: Arenas for a serving process: measured by bench/memory.py, two keep the steady
#: size near the start-up size where the default (8 per core) more than tripled it.
SERVER_ARENAS = 2
#: glibc's ``mallopt`` parameter for the arena limit (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018  (only glibc has it)
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> bool:
    """Return freed heap memory of every arena to the system (``malloc_trim(0)``).

    Takes a few milliseconds on a large heap: call it from a worker thread, after
    a large request. Returns whether anything was released.
    """
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def limit_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at ``count`` (like ``MALLOC_ARENA_MAX``).

    Worker threads each get an arena by default (up to 8 per core); freed memory
    in one is not reused by another, which multiplies the resident size. Call
    early, before worker threads start. An explicit ``MALLOC_ARENA_MAX`` in the
    environment is left alone. Returns whether the limit was set.
    """
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, count))


def limit_arenas_for_serving() -> None:
    """Apply :data:`SERVER_ARENAS` unless ``MALLOC_ARENA_MAX`` is set already."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return  # glibc read it at start-up; an explicit choice wins
    if limit_arenas(SERVER_ARENAS):
        log.debug("malloc_arenas_limited", arenas=SERVER_ARENAS)
