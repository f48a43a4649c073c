"""Loading of the compiled extension ``fastpose._C`` (csrc/, built by setup.py).

The extension is optional: when it is missing or fails to load, ``fastpose`` still imports and
every op runs on the ``reference`` (and ``triton``) backends. This module imports it once,
remembers why it failed and how to fix that, and reports what it was built with
(``fastpose info`` prints :func:`describe`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["build_info", "cuda_built", "describe", "error", "fix", "get", "loaded"]

_BUILD_CMD = "pip install --no-build-isolation --no-deps -e .   (from the repository root)"

_MODULE: ModuleType | None = None
_ERROR: str | None = None
_FIX: str | None = None


def _load() -> None:
    global _MODULE, _ERROR, _FIX
    try:
        import torch  # noqa: F401  (loads torch's OpenMP runtime first; _C then shares it)

        _MODULE = importlib.import_module("fastpose._C")
    except ModuleNotFoundError as exc:
        if exc.name not in ("fastpose._C", "fastpose"):
            _ERROR = f"importing fastpose._C failed: {type(exc).__name__}: {exc}"
            _FIX = f"install the missing module, then rebuild: {_BUILD_CMD}"
        else:
            _ERROR = "fastpose._C is not built (the package was installed without its compiled kernels)"
            _FIX = (f"build it: {_BUILD_CMD}; needs a C++17 compiler with OpenMP "
                    "(and nvcc for the CUDA kernels). An install with FASTPOSE_ALLOW_NO_EXT=1 skips it "
                    "on purpose.")
    except ImportError as exc:  # built, but the shared library cannot be loaded
        _ERROR = f"fastpose._C could not be loaded: {exc}"
        _FIX = ("rebuild it against this environment: " + _BUILD_CMD +
                " (a build from another Python/compiler/CUDA toolkit does not load here)")
    except Exception as exc:  # pragma: no cover - anything else raised at module init
        _ERROR = f"fastpose._C failed to initialise: {type(exc).__name__}: {exc}"
        _FIX = f"rebuild it: {_BUILD_CMD}"


_load()


def get() -> ModuleType | None:
    """The loaded extension module, or None."""
    return _MODULE


def loaded() -> bool:
    return _MODULE is not None


def error() -> str | None:
    """Why the extension is not loaded (None when it is)."""
    return _ERROR


def fix() -> str | None:
    """How to fix :func:`error` (None when loaded)."""
    return _FIX


def cuda_built() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    return bool(_MODULE is not None and getattr(_MODULE, "WITH_CUDA", False))


def build_info() -> dict:
    """What ``fastpose._C`` was built with: compiler, C++ standard, OpenMP version and threads,
    the SIMD clone this CPU runs, CUDA on/off, nvcc version and SM archs (plus the CUDA runtime,
    driver and device count when built with CUDA). Empty when the extension is not loaded."""
    if _MODULE is None:
        return {}
    return dict(_MODULE.build_info())


def describe() -> dict:
    """``{"loaded": bool, "build_info": {...}, "error": str|None, "fix": str|None}`` for ``fastpose info``."""
    return {"loaded": loaded(), "build_info": build_info(), "error": _ERROR, "fix": _FIX}
