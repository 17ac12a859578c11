"""mmkgbench: a benchmark and robustness suite for multi-modal knowledge graph completion."""
import os as _os
import sys as _sys

__version__ = "0.1.0"

# OpenMP threads that wait passively (sleep) instead of spinning, unless the user chose otherwise.
# When another process competes for the cores, spinning threads take CPU from the very thread they
# wait for, at every one of the thousands of small parallel regions of a training step: MoMoK's step
# beside a second copy took 15.7-16.5 s with spinning and 9.4-11.0 s with passive waiting, alone
# 4.6-4.7 s and 4.3-4.8 s (docs/performance.md, "Speed that holds"). It only changes how threads
# wait, never a number. OpenMP reads it once, when torch is first imported, so it is set here only
# if torch is not imported yet (otherwise export OMP_WAIT_POLICY=PASSIVE yourself).
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
