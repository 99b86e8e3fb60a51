"""PyInstaller runtime hook: sounddevice finds the PortAudio library shipped in the bundle.

sounddevice looks PortAudio up with ``ctypes.util.find_library("portaudio")``, which on Linux asks
the system's linker cache and so misses the copy in the bundle (and fails where libportaudio2 is
not installed). This hook runs before the application's imports and answers that one name with the
bundled file; every other name goes to the original function.
"""

import ctypes.util
import glob
import os
import sys

_system_find_library = ctypes.util.find_library


def _find_library(name):
    if name == "portaudio":
        bundled = sorted(glob.glob(os.path.join(sys._MEIPASS, "libportaudio.so*")))
        if bundled:
            return bundled[0]
    return _system_find_library(name)


ctypes.util.find_library = _find_library
