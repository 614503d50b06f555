"""pip install . for nudge: builds nudge._core with the project's own CMake, offline.

Needs only Debian packages: python3-setuptools, python3-wheel, python3-dev, cmake, ninja-build,
g++, pybind11-dev, libboost-{json,container,date-time}-dev, libfmt-dev, libsimdjson-dev
(no Python package index is contacted: there is no pyproject.toml, so pip builds without an
isolated environment). Debian's pip refuses to install into the system interpreter
(PEP 668), so install into a virtual environment that can see Debian's packages:

    /usr/bin/python3 -m venv --system-site-packages /tmp/venv
    /tmp/venv/bin/pip install --no-build-isolation /path/to/nudge
"""
import os
import pathlib
import re
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Configures the whole project with only the Python module on, builds _core, and copies it
    with the pure-Python package files where setuptools expects the extension."""

    def build_extension(self, ext):
        target = pathlib.Path(self.get_ext_fullpath(ext.name)).resolve()
        build = pathlib.Path(self.build_temp).resolve() / "cmake"
        build.mkdir(parents=True, exist_ok=True)
        generator = ["-G", "Ninja"] if subprocess.run(
            ["ninja", "--version"], capture_output=True).returncode == 0 else []
        subprocess.run(
            ["cmake", "-S", str(ROOT), "-B", str(build), *generator,
             "-DCMAKE_BUILD_TYPE=Release", f"-DPython3_EXECUTABLE={sys.executable}",
             "-DNUDGE_BUILD_PYTHON=ON", "-DNUDGE_BUILD_TESTS=OFF", "-DNUDGE_BUILD_EXAMPLES=OFF",
             "-DNUDGE_BUILD_BENCH=OFF", "-DNUDGE_BUILD_CLI=OFF", "-DNUDGE_INSTALL=OFF"],
            check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
        subprocess.run(["cmake", "--build", str(build), "--target", "_core", "-j", jobs],
                       check=True)
        built = build / "bindings" / "python" / "nudge"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(next(built.glob("_core*.so"))), str(target))



def project_version():
    """The version of project(nudge VERSION x.y.z) in CMakeLists.txt: the one place it is written."""
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    return re.search(r"project\(nudge VERSION ([0-9]+\.[0-9]+\.[0-9]+)", text).group(1)


# Keep setuptools' work out of build/, which developers use as a CMake build directory.
BUILD_BASE = "build-setuptools"
os.makedirs(ROOT / BUILD_BASE, exist_ok=True)

setup(
    name="nudge",
    version=project_version(),
    description="Embeddable marketing-automation rules engine",
    license="MIT",
    packages=["nudge", "nudge.distributed"],
    package_dir={"nudge": "bindings/python/nudge",
                 "nudge.distributed": "bindings/python/nudge/distributed"},
    package_data={"nudge": ["__init__.pyi", "py.typed"]},
    ext_modules=[CMakeExtension("nudge._core")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    zip_safe=False,
    options={"build": {"build_base": BUILD_BASE}, "egg_info": {"egg_base": BUILD_BASE}},
)
