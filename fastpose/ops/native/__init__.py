"""The ``cpu`` and ``cuda`` backends: the compiled kernels of ``fastpose._C`` (csrc/) registered
as ``torch.library`` custom ops (fake kernels + autograd) and as backends of the dispatch.

Importing this package registers:

* ``cpu`` for every op, when ``fastpose._C`` loaded (C++/OpenMP kernels; float16/bfloat16 are
  upcast to float32 on entry);
* ``cuda`` for every op, when ``fastpose._C`` was also built with its CUDA kernels.

A backend that cannot be registered records why (``fastpose info`` shows it) and registers
nothing: nothing is faked. Custom ops are named ``fastpose::<op>_<backend>`` and
``fastpose::<op>_<backend>_backward``. They are what torch.compile, export, FakeTensor, functorch,
dispatch modes and the profiler see; in plain eager mode the same Python forward / backward are
called directly, without the custom-op machinery (``_glue.eager_op``: bitwise the same results,
~40 us less per forward + backward; ``_glue.custom_ops_only()`` forces the custom ops).
"""

from __future__ import annotations

import importlib

from ... import _ext
from .._dispatch import available_backends, record_load_error
from .._spec import SPECS, native_functions

__all__ = ["registered_backends"]

# Functions of fastpose._C this package calls (a build from an older csrc/ lacks some of them): the
# entry points every OpSpec declares (fastpose/ops/_spec.py), plus the shared row_scale kernel and,
# on the CPU, the buffer role tables of the typed kernel boundary.
_REQUIRED = {
    "cpu": ("row_scale_cpu", *native_functions("cpu"), "buffer_roles"),
    "cuda": ("row_scale_cuda", *native_functions("cuda")),
}

_REGISTERED: list[str] = []


def registered_backends() -> list[str]:
    """The native backends this import registered ("cpu", "cuda")."""
    return list(_REGISTERED)


def _missing(backend: str) -> list[str]:
    mod = _ext.get()
    return [name for name in _REQUIRED[backend] if not hasattr(mod, name)]


def _cuda_runtime_error() -> str | None:
    """Why the CUDA kernels cannot run on this machine's GPU although torch can use it (None if they
    can, or if there is no GPU to run on). fastpose._C links the CUDA runtime of the nvcc that
    built it statically, so a driver older than that toolkit rejects every launch."""
    if not _ext.cuda_built():
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    info = _ext.build_info()
    if info.get("cuda_device_count", 0) > 0:
        return None
    return (f"the CUDA runtime of fastpose._C (nvcc {info.get('nvcc')}) cannot use this GPU: "
            f"{info.get('cuda_device_error') or 'no device visible'}; fix: rebuild with a CUDA toolkit "
            "that the installed driver supports (CUDACXX=/path/to/nvcc pip install --no-build-isolation "
            "--no-deps -e .), or update the driver")


def _register_all() -> None:
    if not _ext.loaded():
        why = f"{_ext.error()}; fix: {_ext.fix()}"
        record_load_error("cpu", why)
        record_load_error("cuda", why)
        return
    # one module per op stem (fastpose/ops/native/<stem>.py), each registering the ops of its specs
    modules = [importlib.import_module(f"{__name__}.{stem}") for stem in dict.fromkeys(s.stem for s in SPECS.values())]
    backends = ["cpu"]
    cuda_error = _cuda_runtime_error()
    if _ext.cuda_built() and cuda_error is None:
        backends.append("cuda")
    elif cuda_error is not None:
        record_load_error("cuda", cuda_error)
    else:
        record_load_error(
            "cuda",
            "fastpose._C was built without its CUDA kernels (nvcc was not found at build time, or "
            "FASTPOSE_CUDA=0); fix: rebuild on a machine with nvcc: FASTPOSE_CUDA=1 pip install "
            "--no-build-isolation --no-deps -e .",
        )
    for backend in backends:
        missing = _missing(backend)
        if missing:
            record_load_error(backend, f"fastpose._C is out of date (no {', '.join(missing)}); fix: rebuild it: "
                                       "pip install --no-build-isolation --no-deps -e .")
            continue
        for module in modules:
            module.register(backend)
        unserved = [op for op in SPECS if backend not in available_backends(op)]
        if unserved:  # a spec without its native implementation: say so rather than serve part of the ops
            raise RuntimeError(f"fastpose.ops.native: the {backend} modules registered no implementation of "
                               f"{unserved} (declared in fastpose/ops/_spec.py)")
        _REGISTERED.append(backend)


_register_all()
