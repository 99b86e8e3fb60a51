"""Ctrl-C while a command is still starting (importing torch): exit 130 quietly, no traceback.

An entry point calls :func:`quiet_interrupts` first thing, before its heavy imports: until
:func:`restore_interrupts` (called by :func:`core.runtime.run_command` once the command is ready to
run), Ctrl-C ends the process at once with one line and exit code 130. Nothing has been written
then; a KeyboardInterrupt raised inside an import instead printed tracebacks, or was lost, or
aborted in torch's C++ start-up. This module imports nothing heavy.
"""

from __future__ import annotations

import os
import signal
from typing import Any

__all__ = ["quiet_interrupts", "restore_interrupts", "INTERRUPTED_EXIT"]

#: The exit code of a process ended by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED_EXIT = 130


def _exit_now(signum: int, frame: Any) -> None:
    try:
        os.write(2, b"interrupted\n")
    except OSError:
        pass
    os._exit(INTERRUPTED_EXIT)


def quiet_interrupts() -> None:
    """Until :func:`restore_interrupts`, Ctrl-C exits at once with code 130 and the line "interrupted"."""
    try:
        signal.signal(signal.SIGINT, _exit_now)
    except ValueError:  # not the main thread: leave the handler as it is
        pass


def restore_interrupts() -> None:
    """Ctrl-C raises KeyboardInterrupt again (the command's own handling), if :func:`quiet_interrupts` set it."""
    try:
        if signal.getsignal(signal.SIGINT) is _exit_now:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        pass
