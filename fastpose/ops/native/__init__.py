"""The ``cpu`` and ``cuda`` backends: the compiled kernels of ``fastpose._C`` (csrc/) registered
as ``torch.library`` custom ops (fake kernels + autograd) and as backends of the dispatch.

Importing this package registers:

* ``cpu`` for every op, when ``fastpose._C`` loaded (C++/OpenMP kernels; float16/bfloat16 are
  upcast to float32 on entry);
* ``cuda`` for every op, when ``fastpose._C`` was also built with its CUDA kernels.

A backend that cannot be registered records why (``fastpose info`` shows it) and registers
nothing: nothing is faked. Custom ops are named ``fastpose::<op>_<backend>`` and
``fastpose::<op>_<backend>_backward``.
"""

from __future__ import annotations

from ... import _ext
from .._dispatch import record_load_error

__all__ = ["registered_backends"]

# Functions of fastpose._C this package calls; a build from an older csrc/ lacks some of them.
_REQUIRED = {
    "cpu": ("row_scale_cpu", "soft_argmax_forward_cpu", "soft_argmax_backward_cpu", "heatmap_mse_forward_cpu",
            "heatmap_mse_backward_cpu",
            "soft_argmax_heatmap_mse_forward_cpu", "soft_argmax_heatmap_mse_backward_cpu",
            "project_forward_cpu", "project_backward_cpu", "reprojection_forward_cpu",
            "buffer_roles"),  # with the camera index map (cam_div) and the buffer role tables
    "cuda": ("row_scale_cuda", "soft_argmax_workspace_cuda", "soft_argmax_forward_cuda",
             "soft_argmax_backward_cuda", "heatmap_mse_workspace_cuda", "heatmap_mse_forward_cuda",
             "heatmap_mse_backward_cuda",
             "soft_argmax_heatmap_mse_workspace_cuda", "soft_argmax_heatmap_mse_forward_cuda",
             "soft_argmax_heatmap_mse_backward_cuda", "project_forward_cuda", "project_backward_cuda",
             "reprojection_workspace_cuda", "reprojection_forward_cuda"),
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
    from . import heatmap_mse, projection, soft_argmax, soft_argmax_heatmap_mse

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
        for module in (soft_argmax, heatmap_mse, soft_argmax_heatmap_mse, projection):
            module.register(backend)
        _REGISTERED.append(backend)


_register_all()
