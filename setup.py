"""Builds the C backend (``fastopt._fastopt_c``) through cffi; the rest is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"])
