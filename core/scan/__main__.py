"""``python -m core.scan``: the command is :mod:`core.cli.scan` (this module only runs it)."""

import sys

if __name__ == "__main__":
    from core.interrupts import quiet_interrupts

    quiet_interrupts()  # Ctrl-C while torch imports: exit 130, no traceback
    from core.cli.scan import main
    from core.runtime import run_command

    sys.exit(run_command(main))
