"""Build of the compiled extension ``fastpose._C`` (metadata lives in pyproject.toml).

``csrc/`` is compiled by CMake + Ninja (see CMakeLists.txt): C++17 with OpenMP always, the CUDA
kernels when nvcc is found. torch is *not* needed at build time (the kernels are framework-free),
so ``pip install .`` works with build isolation; the build requirements are pybind11, cmake and
ninja (pyproject.toml ``[build-system]``).

Environment switches:

``FASTPOSE_CUDA=auto|0|1``   auto (default): compile the .cu files when nvcc is found (falls back
                             to a CPU-only build, loudly, if the CUDA build fails); 1: require CUDA;
                             0: CPU only.
``FASTPOSE_CUDA_ARCHS``      SM architectures, default ``80;90`` (``80,90`` and ``8.0 9.0`` also work).
``FASTPOSE_ALLOW_NO_EXT=1``  if the extension cannot be built at all, install the pure-Python
                             package anyway (only the ``reference``/``triton`` backends then work;
                             ``fastpose info`` says why). Without it a failed build fails the install.
``FASTPOSE_BUILD_TYPE``      CMake build type, default Release.
``MAX_JOBS``                 parallel compile jobs (default: ninja's choice).
``CUDACXX`` / ``CUDA_HOME``  where to find nvcc.

The CMake build tree is kept in ``build/cmake-<python>-<interpreter hash>-<cpu|cuda>-<type>`` so rebuilds
are incremental.
The top-level ``kernels/`` folder (Triton kernels) is installed as the subpackage ``fastpose.kernels``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class _BuildFailure(RuntimeError):
    pass


def _env_flag(name: str, default: str) -> str:
    return os.environ.get(name, default).strip().lower()


def _find_nvcc() -> str | None:
    candidates = [os.environ.get("CUDACXX")]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    candidates += [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def _tool(module: str, attr: str, exe: str) -> str:
    """Path of the cmake / ninja executable: the pip-installed one first (works without an
    activated venv and inside build isolation), else PATH."""
    try:
        mod = __import__(module)
        path = os.path.join(getattr(mod, attr), exe)
        if os.path.isfile(path):
            return path
    except Exception:  # not installed as a Python package: fall back to PATH
        pass
    found = shutil.which(exe)
    if not found:
        raise _BuildFailure(
            f"{exe} not found: install the build requirements (pip install 'cmake>=3.24' ninja pybind11) "
            "or build with pip's default build isolation"
        )
    return found


def _cuda_archs() -> str:
    raw = os.environ.get("FASTPOSE_CUDA_ARCHS", "80;90")
    archs = [a.replace(".", "") for a in re.split(r"[;, ]+", raw.strip()) if a]
    if not archs or not all(re.fullmatch(r"\d+[a-z]?(-real|-virtual)?", a) for a in archs):
        raise _BuildFailure(f"FASTPOSE_CUDA_ARCHS must list SM architectures like '80;90', got {raw!r}")
    return ";".join(archs)


class CMakeExtension(Extension):
    def __init__(self, name: str, sourcedir: Path):
        super().__init__(name, sources=[])
        self.sourcedir = str(sourcedir)


class CMakeBuild(build_ext):
    """Configure + build with CMake/Ninja, then copy the module where setuptools expects it."""

    def run(self):
        try:
            super().run()
        except _BuildFailure as exc:
            if _env_flag("FASTPOSE_ALLOW_NO_EXT", "0") in ("1", "true", "yes"):
                bar = "!" * 78
                print(f"\n{bar}\nWARNING: fastpose._C was NOT built (FASTPOSE_ALLOW_NO_EXT=1):\n{exc}\n"
                      "The 'cpu' and 'cuda' backends will be unavailable; `fastpose info` explains.\n"
                      f"{bar}\n", file=sys.stderr)
                self.extensions = []
                return
            raise SystemExit(
                f"error: building the extension fastpose._C failed:\n{exc}\n"
                "Fix the error above, or set FASTPOSE_CUDA=0 for a CPU-only build, or "
                "FASTPOSE_ALLOW_NO_EXT=1 to install without compiled kernels (reference/triton only)."
            ) from None

    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        mode = _env_flag("FASTPOSE_CUDA", "auto")
        if mode not in ("auto", "0", "1"):
            raise _BuildFailure(f"FASTPOSE_CUDA must be auto, 0 or 1, got {mode!r}")
        nvcc = _find_nvcc() if mode != "0" else None
        if mode == "1" and nvcc is None:
            raise _BuildFailure("FASTPOSE_CUDA=1 but nvcc was not found (set CUDACXX or CUDA_HOME)")
        if nvcc is not None:
            try:
                return self._cmake_build(ext, nvcc)
            except _BuildFailure as exc:
                if mode == "1":
                    raise
                bar = "!" * 78
                print(f"\n{bar}\nWARNING: the CUDA build failed; building fastpose._C for the CPU only.\n"
                      f"{exc}\nSet FASTPOSE_CUDA=0 to skip CUDA, or FASTPOSE_CUDA=1 to make this an error.\n"
                      f"{bar}\n", file=sys.stderr)
        return self._cmake_build(ext, None)

    def _cmake_build(self, ext: CMakeExtension, nvcc: str | None) -> None:
        import pybind11  # a build requirement (pyproject.toml), not a runtime one

        cmake = _tool("cmake", "CMAKE_BIN_DIR", "cmake")
        ninja = _tool("ninja", "BIN_DIR", "ninja")
        build_type = os.environ.get("FASTPOSE_BUILD_TYPE", "Release")
        # One build tree per interpreter (a venv's python, or pip's isolated build env's), CUDA
        # on/off and build type: CMake caches the Python it found, so trees are never shared.
        exe = hashlib.sha1(f"{sys.executable}|{sys.prefix}".encode()).hexdigest()[:8]
        tag = f"{sys.implementation.cache_tag}-{exe}-{'cuda' if nvcc else 'cpu'}-{build_type.lower()}"
        build_dir = Path(ext.sourcedir) / "build" / f"cmake-{tag}"
        build_dir.mkdir(parents=True, exist_ok=True)
        stage = build_dir / "stage"
        args = [
            "-S", ext.sourcedir, "-B", str(build_dir), "-G", "Ninja",
            f"-DCMAKE_MAKE_PROGRAM={ninja}",
            f"-DCMAKE_BUILD_TYPE={build_type}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={stage}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DFASTPOSE_VERSION={self.distribution.get_version()}",
            f"-DFASTPOSE_CUDA={'ON' if nvcc else 'OFF'}",
        ]
        if nvcc:
            args += [f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DFASTPOSE_CUDA_ARCHS={_cuda_archs()}",
                     f"-DCMAKE_CUDA_ARCHITECTURES={_cuda_archs()}"]
        build = [cmake, "--build", str(build_dir)]
        if os.environ.get("MAX_JOBS"):
            build += ["-j", os.environ["MAX_JOBS"]]
        for cmd in ([cmake, *args], build):
            print("fastpose build:", " ".join(cmd), flush=True)
            proc = subprocess.run(cmd, cwd=ext.sourcedir)
            if proc.returncode != 0:
                raise _BuildFailure(f"command failed with exit code {proc.returncode}: {' '.join(cmd)}")
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        built = stage / f"_C{suffix}"
        if not built.is_file():
            found = sorted(stage.glob("_C*"))
            if not found:
                raise _BuildFailure(f"CMake finished but produced no module in {stage}")
            built = found[0]
        dest = Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Replace atomically: a process that has the old module mapped keeps a valid file.
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(built, tmp)
        os.replace(tmp, dest)


setup(
    packages=[*find_packages(include=["fastpose", "fastpose.*"]), "fastpose.kernels"],
    package_dir={"fastpose.kernels": "kernels"},
    # the built-in real motion (CMU, int16 millimetres, 1.7 MB): fastpose.data.motion.builtin_motion
    package_data={"fastpose.data": ["cmu_motion.npz"]},
    ext_modules=[CMakeExtension("fastpose._C", ROOT)],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
