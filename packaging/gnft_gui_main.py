"""The bundle's entry script: the same ``main`` as the ``gnft-gui`` console script."""

import sys

from gnft_gui.app import main

if __name__ == "__main__":
    sys.exit(main())
