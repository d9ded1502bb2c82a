"""Build the private C++ core ``twin._core`` with CMake (the pybind11 cmake_example pattern).

``CMakeExtension``/``CMakeBuild`` hand the build to CMake: Release by default (``DEBUG=1`` or
``CMAKE_BUILD_TYPE`` to change it), Ninja when present, and any extra ``CMAKE_ARGS`` honoured.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    def __init__(self, name: str, sourcedir: str = "") -> None:
        super().__init__(name, sources=[])
        self.sourcedir = os.fspath(Path(sourcedir).resolve())


class CMakeBuild(build_ext):
    def build_extension(self, ext: CMakeExtension) -> None:
        ext_fullpath = Path.cwd() / self.get_ext_fullpath(ext.name)
        extdir = ext_fullpath.parent.resolve()
        debug = int(os.environ.get("DEBUG", 0)) if self.debug is None else self.debug
        cfg = os.environ.get("CMAKE_BUILD_TYPE", "Debug" if debug else "Release")

        cmake_args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}{os.sep}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
        ]
        try:
            import pybind11

            cmake_args.append(f"-Dpybind11_DIR={pybind11.get_cmake_dir()}")
        except ImportError:  # pragma: no cover - pybind11 is a build requirement
            pass
        if "CMAKE_ARGS" in os.environ:
            cmake_args += [item for item in os.environ["CMAKE_ARGS"].split(" ") if item]
        build_args: list[str] = []
        if not os.environ.get("CMAKE_GENERATOR") and shutil.which("ninja"):
            cmake_args.append("-GNinja")
        if "CMAKE_BUILD_PARALLEL_LEVEL" not in os.environ:
            build_args.append(f"-j{os.cpu_count() or 2}")

        # Every build (editable installs, `make core`, `pip wheel .`) shares one CMake tree under
        # build/core, so rebuilding after an edit is incremental and a wheel built after `make test`
        # (CI) only relinks the core into the wheel's folder instead of compiling it again.
        build_temp = Path(ext.sourcedir) / "build" / "core"
        build_temp.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cmake", ext.sourcedir, *cmake_args], cwd=build_temp, check=True)
        subprocess.run(["cmake", "--build", ".", *build_args], cwd=build_temp, check=True)


setup(ext_modules=[CMakeExtension("twin._core")], cmdclass={"build_ext": CMakeBuild})
