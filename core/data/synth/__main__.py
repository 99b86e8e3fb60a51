"""``python -m core.data.synth``: run :func:`core.data.synth.cli.main`; an expected failure ends with one line."""

from __future__ import annotations

import sys

from core.data.synth.cli import main
from core.runtime import run_command

if __name__ == "__main__":
    sys.exit(run_command(main))
