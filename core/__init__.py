"""GN-FT Workbench engine: data, attacks, models, training, defenses, analysis (no Qt)."""

__version__ = "0.1.0"

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # `python -m core.X` while it imports its packages (torch): Ctrl-C exits 130 quietly
    from core.interrupts import quiet_interrupts as _quiet_interrupts

    _quiet_interrupts()

from core.allocator import configure_allocator as _configure_allocator  # noqa: E402

# large tensor buffers stay in the process between training steps (core/allocator.py; GNFT_ALLOCATOR=system: off)
_configure_allocator()
