"""``python -m core.demo``: the command is :mod:`core.cli.demo` (this module only runs it)."""

import sys

if __name__ == "__main__":
    from core.cli.demo import main
    from core.runtime import run_command

    sys.exit(run_command(main))
