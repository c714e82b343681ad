"""The optional C accelerator; everything else is in setup.cfg.

`optional=True`: without a C compiler and Python's headers the package installs
without it and the pure-Python readers do the same work, slower.
"""

from pathlib import Path

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "connectors.accel._accel",
            sorted(str(p) for p in Path("connectors/accel").glob("*.c")),
            depends=["connectors/accel/accel.h"],
            optional=True,
        )
    ]
)
