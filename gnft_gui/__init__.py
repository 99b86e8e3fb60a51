"""GN-FT Workbench desktop application (Qt), built on the headless engine in ``core``."""

import os as _os
import sys as _sys

# started as the application (gnft-gui, or python -m gnft_gui.app): Ctrl-C while Qt and torch import exits
# 130 quietly; gnft_gui.app.main restores the usual handling once the window's modules are imported
if _sys.argv[:1] == ["-m"] or _os.path.basename(_sys.argv[0] or "").startswith("gnft-gui"):
    from core.interrupts import quiet_interrupts as _quiet_interrupts

    _quiet_interrupts()
