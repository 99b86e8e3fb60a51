"""GN-FT Workbench engine: data, attacks, models, training, defenses, analysis (no Qt)."""

__version__ = "0.1.0"

from core.allocator import configure_allocator as _configure_allocator  # noqa: E402

# large tensor buffers stay in the process between training steps (core/allocator.py; GNFT_ALLOCATOR=system: off)
_configure_allocator()
