"""fastpose: fused kernels and models for monocular 3D human pose estimation.

``fastpose.ops`` holds the fused ops (soft-argmax, on-the-fly Gaussian heatmap MSE, distorted
camera projection), ``fastpose.losses`` the pose metrics and losses; ``fastpose.use_backend``
picks the backend of the ops inside a ``with`` block.

The package imports lazily (PEP 562 module ``__getattr__``): ``import fastpose`` costs nothing,
and ``fastpose.ops`` / ``fastpose.losses`` / ``fastpose.use_backend`` import torch (and register
the backends) on first access. The reason: the command line (``fastpose --help``) must not pay
the 2-3 s of importing torch, Triton and Inductor just to print its help.
"""

from __future__ import annotations

import importlib as _importlib

__version__ = "0.1.0"

__all__ = ["__version__", "losses", "ops", "use_backend"]

# attribute -> (module, attribute inside it or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "ops": ("fastpose.ops", None),
    "losses": ("fastpose.losses", None),
    "use_backend": ("fastpose.ops", "use_backend"),
}


def __getattr__(name: str):
    """Import ``ops``, ``losses``, ``use_backend`` -- and any other submodule -- on first access."""
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = _importlib.import_module(module)
        if attr is not None:
            value = getattr(value, attr)
        globals()[name] = value  # later accesses skip this function
        return value
    if not name.startswith("_"):
        try:
            return _importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":  # the submodule exists but one of its imports failed
                raise
    raise AttributeError(f"module 'fastpose' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
