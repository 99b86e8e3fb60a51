"""Keep large tensor buffers inside the process (glibc's malloc), for every entry point.

glibc serves allocations above its mmap threshold (at most 32 MB) with fresh ``mmap`` pages and
gives them back with ``munmap`` when they are freed; it also trims the heap's top past 128 KB.
A training step allocates and frees the same large activations every time, so each step
page-faults them in again: a fresh 120 MB fill costs about 10x a reused one (issue 30). Setting
``M_MMAP_MAX`` to 0 (large blocks come from the heap) and a high ``M_TRIM_THRESHOLD`` (the heap is
not shrunk after every step) keeps them. The numbers computed are the same bits; only where the
memory comes from changes.

Between units of work that need different buffers (the cells of a grid: a 44.1 kHz scan, then 16 kHz
repairs) the kept memory only grows, the largest of each kind side by side: one in-process grid held
13 GB after four cells and was killed for memory. :func:`release_free_memory` gives the free part back
(``malloc_trim``); the grid calls it after every cell.

It is applied when :mod:`core` is imported, so the commands, the application, grid workers and
tests all run with it. ``GNFT_ALLOCATOR=system`` leaves glibc's defaults (to compare, or if a
very large one-off allocation should go back to the system when freed). Elsewhere than Linux with
glibc nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import warnings

__all__ = ["ENV", "configure_allocator", "allocator_mode", "mmapped_bytes", "release_free_memory"]

ENV = "GNFT_ALLOCATOR"
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
#: The heap is trimmed only when this much is free at its top (1 GiB: a step's buffers stay).
TRIM_THRESHOLD = 1 << 30
GLIBC_MMAP_MAX, GLIBC_TRIM_THRESHOLD = 65536, 128 * 1024  # glibc's defaults

_mode: str | None = None


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 (absent outside glibc: musl has no mallopt)
        libc.gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def configure_allocator(mode: str | None = None) -> str:
    """Apply ``mode`` ("keep" or "system"; default from ``$GNFT_ALLOCATOR``, else "keep").

    Returns what is in force: "keep", "system", or "unsupported" (not glibc). "system" after
    "keep" puts glibc's default values back (its dynamic mmap threshold stays off)."""
    global _mode
    if mode is None:
        mode = (os.environ.get(ENV) or "keep").strip().lower()
        if mode not in ("keep", "system"):  # read at import: say so and go on rather than fail every command
            warnings.warn(f"${ENV} must be 'keep' or 'system', got {mode!r}; using 'keep'", stacklevel=2)
            mode = "keep"
    if mode not in ("keep", "system"):
        raise ValueError(f"allocator mode must be 'keep' or 'system', got {mode!r}")
    libc = _libc()
    if libc is None:
        _mode = "unsupported"
        return _mode
    if mode == "keep" and _mode != "keep":
        ok = libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        _mode = "keep" if ok else "system"
    elif mode == "system" and _mode == "keep":
        libc.mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD)
        _mode = "system"
    elif mode == "system":
        _mode = "system"  # glibc's defaults, untouched
    return _mode


def allocator_mode() -> str:
    """What :func:`configure_allocator` put in force ("keep", "system", "unsupported")."""
    return _mode if _mode is not None else configure_allocator()


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def mmapped_bytes() -> int | None:
    """Bytes glibc holds in mmapped blocks now (``mallinfo2().hblkhd``), None where it cannot be read."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().hblkhd)


def release_free_memory() -> None:
    """Give the memory glibc holds free back to the system (``malloc_trim(0)``: every arena, free pages
    inside the heap too). Between units of work, never inside a step loop; a no-op without glibc."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
