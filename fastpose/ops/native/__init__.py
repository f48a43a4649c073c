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
            "soft_argmax_heatmap_mse_forward_cpu", "soft_argmax_heatmap_mse_backward_cpu",
            "project_forward_cpu", "project_backward_cpu", "reprojection_forward_cpu"),
    "cuda": ("row_scale_cuda", "soft_argmax_workspace_cuda", "soft_argmax_forward_cuda",
             "soft_argmax_backward_cuda", "heatmap_mse_workspace_cuda", "heatmap_mse_forward_cuda",
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


def _register_all() -> None:
    if not _ext.loaded():
        why = f"{_ext.error()}; fix: {_ext.fix()}"
        record_load_error("cpu", why)
        record_load_error("cuda", why)
        return
    from . import heatmap_mse, projection, soft_argmax, soft_argmax_heatmap_mse

    backends = ["cpu"]
    if _ext.cuda_built():
        backends.append("cuda")
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
