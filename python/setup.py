"""Builds the cgloo package with the library compiled in: the extension's C files and every
library source under ../src (tests excepted), so that pip needs neither CMake nor an installed
libcgloo. pip install --no-build-isolation ./python"""

import glob
import os
import re

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rel(path):
    """setuptools wants source paths relative to this directory."""
    return os.path.relpath(path, HERE)


def library_sources():
    found = glob.glob(os.path.join(ROOT, "src", "**", "*.c"), recursive=True)
    mpi = os.path.join(ROOT, "src", "mpi") + os.sep  # cgloo_mpi, a library of its own
    return sorted(rel(p) for p in found
                  if not os.path.basename(p).startswith("test_") and not p.startswith(mpi))


def version():
    header = open(os.path.join(ROOT, "include", "cgloo", "cgloo.h")).read()
    return re.search(r'#define CGLOO_VERSION_STRING "([^"]+)"', header).group(1)


extension = Extension(
    "cgloo._cgloo",
    sources=sorted(glob.glob("cgloo/_cgloo/*.c")) + library_sources(),
    include_dirs=[rel(os.path.join(ROOT, "src")), rel(os.path.join(ROOT, "include"))],
    define_macros=[("_GNU_SOURCE", None)],
    extra_compile_args=["-std=gnu11", "-pthread", "-fvisibility=hidden", "-ffp-contract=off"],
    extra_link_args=["-pthread"],
)

setup(version=version(), ext_modules=[extension])
