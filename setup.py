"""A shim: everything about the package lives in setup.cfg."""

from setuptools import setup

setup()
