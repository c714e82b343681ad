"""The optional C accelerator; everything else is in setup.cfg.

`optional=True`: without a C compiler and Python's headers the package installs
without it and the pure-Python readers do the same work, slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "connectors.mysql._rowjson",
            ["connectors/mysql/_rowjson.c", "connectors/mysql/_records.c"],
            depends=["connectors/mysql/_rowjson.h"],
            optional=True,
        )
    ]
)
