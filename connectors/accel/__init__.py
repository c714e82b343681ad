"""The connectors' optional C accelerator: the C files beside this one (accel.h
says which does what), built into `_accel` where a C compiler and Python's
headers are at install time (setup.py).

`accelerator` is that module, or None where it is not built or the operator
turned it off with ``CDC_PURE_PYTHON=1``: the Python paths then do the same
work and give the same bytes, slower.
"""

from __future__ import annotations

import os

try:
    from . import _accel as accelerator
except ImportError:  # installed without a C compiler
    accelerator = None  # type: ignore[assignment]
if os.environ.get("CDC_PURE_PYTHON"):  # the operator's switch
    accelerator = None  # type: ignore[assignment]
