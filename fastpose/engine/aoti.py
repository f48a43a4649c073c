"""AOTInductor packages: compile a model ahead of time, run it without the model's Python code.

Build::

    Deployable --torch.export (use_backend("reference"), dynamic batch)--> ExportedProgram
        --run_decompositions(decomposition_table())--> plain aten graph
        --torch._inductor.aoti_compile_and_package--> model.pt2 (a zip: C++/CUDA kernels + weights)

The fused ops are custom ops whose kernels live in Python (reference), in ``fastpose._C`` or in
Triton; a package that called them would need fastpose imported at run time. So before
compiling, each ``fastpose::<op>_reference`` node is decomposed into its reference math
(:mod:`fastpose.reference`, plain aten), which Inductor fuses with its neighbours and compiles
like the rest of the network: the package depends on torch only.

Run::

    runner = AotiRunner("model.pt2")        # torch._inductor.aoti_load_package underneath
    outputs = runner(images)                # validated against the package's metadata

The package is built for one device: ``device="cpu"`` (C++ with OpenMP, compiled by the
system compiler) or ``device="cuda"`` (Triton/CUDA kernels; needs a GPU at build and run time).
The CUDA path is the same code with tensors on the GPU; it has not been run in this repository
yet (no GPU here): "not yet measured on a GPU".

Metadata (inputs, outputs, precision, versions) is stored in the package
(``aot_inductor.metadata``) and in ``<package>.json`` next to it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ._common import (
    EngineLoadError,
    EngineMetadata,
    TensorSpec,
    now_iso,
    read_sidecar,
    resolve_dims,
    versions,
)
from ._export import REFERENCE_OPS, export_program, fastpose_ops_in, metadata_dims, reference_overload
from ._models import Deployable
from .onnx import PARITY_TOLERANCES, ParityReport, compare_outputs

__all__ = ["AotiRunner", "decomposition_table", "export_aoti"]

_PRECISION_OF = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


def decomposition_table() -> dict:
    """{reference custom op: its reference math} merged into torch.export's default decompositions.

    Each entry returns exactly what the custom op returns (same outputs, same dtypes).
    """
    from ..reference import heatmap_mse as hm
    from ..reference import projection as pj
    from ..reference import soft_argmax as sa
    from ..reference import soft_argmax_heatmap_mse as sahm

    def fused(logits, joints, sigma, weights):
        coords, mse, lse = sahm.soft_argmax_heatmap_mse_forward(logits, joints, sigma, weights)
        return coords, lse, mse  # the custom op's output order

    fns = {
        "soft_argmax_2d_reference": lambda logits: sa.soft_argmax_forward(logits, 2),
        "soft_argmax_3d_reference": lambda logits: sa.soft_argmax_forward(logits, 3),
        "heatmap_mse_2d_reference": hm.heatmap_mse_2d,
        "heatmap_mse_3d_reference": hm.heatmap_mse_3d,
        "soft_argmax_heatmap_mse_3d_reference": fused,
        "project_to_2d_reference": pj.project_to_2d,
        "reprojection_loss_reference": pj.reprojection_loss,
    }
    missing = sorted(set(REFERENCE_OPS) - set(fns))
    if missing:
        raise RuntimeError(f"AOTInductor decomposition table lacks {missing}")
    table = torch.export.default_decompositions()
    for name, fn in fns.items():
        table[reference_overload(name)] = fn
    return table


def export_aoti(dep: Deployable, path: str | os.PathLike, *, inputs: Sequence[Tensor] | None = None,
                batch: int = 2, device: str = "cpu", dynamic_batch: bool = True, max_batch: int = 1024,
                inductor_configs: dict | None = None, extra: dict | None = None) -> EngineMetadata:
    """Compile ``dep`` into the AOTInductor package ``path`` (``.pt2``) for ``device``.

    ``inputs``: example inputs (default ``dep.example_inputs(batch)``, batch >= 2 for a dynamic
    batch), moved to ``device``. Returns the package's metadata (also written as ``<path>.json``).
    Compiling runs the C++ (or Triton) compiler: tens of seconds for a small model on a CPU.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"argument 'device': expected 'cpu' or 'cuda', received {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("export_aoti(device='cuda'): no CUDA device is available to compile for")
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"argument 'path': an AOTInductor package must end in .pt2, received {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    dep = dep.to(device=device)
    inputs = tuple(t.to(device) for t in (inputs if inputs is not None else dep.example_inputs(batch)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytree FutureWarnings from torch.export internals
        ep = export_program(dep, inputs, dynamic_batch=dynamic_batch, max_batch=max_batch)
        ep = ep.run_decompositions(decomposition_table())
    left = fastpose_ops_in(ep.graph_module)
    if left:
        raise RuntimeError(f"export_aoti: fastpose ops {sorted(left)} survived decomposition")
    outs = dep(*inputs)
    in_axes = list(dep.input_axes) or [{} for _ in inputs]
    out_axes = list(dep.output_axes) or [{} for _ in outs]
    batch_range = (1, max_batch) if dynamic_batch else (inputs[0].shape[0],) * 2
    meta = EngineMetadata(
        format="aoti", model=dep.name, precision=_PRECISION_OF.get(dep.dtype, str(dep.dtype)), device=device,
        inputs=[TensorSpec.of(n, t, dynamic_batch, a)
                for n, t, a in zip(dep.input_names, inputs, in_axes, strict=True)],
        outputs=[TensorSpec.of(n, t, dynamic_batch and t.dim() > 0, a)
                 for n, t, a in zip(dep.output_names, outs, out_axes, strict=True)],
        batch_range=batch_range, dims=metadata_dims(dep, dynamic_batch, batch_range),
        model_config=dep.config, versions=versions(), created=now_iso(), extra=dict(extra or {}),
    )
    configs = {"aot_inductor.metadata": {"fastpose": meta.to_json()}, **(inductor_configs or {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch._inductor.aoti_compile_and_package(ep, package_path=str(path), inductor_configs=configs)
    meta.write_sidecar(path)
    return meta


class AotiRunner:
    """Load an AOTInductor package (``torch._inductor.aoti_load_package``) and run it.

    Needs only torch: not the model's classes, not fastpose's ops. Inputs are validated against
    the package metadata (a wrong shape, dtype, device or batch raises ValueError naming the input).
    Returns a tuple of output tensors.
    """

    def __init__(self, path: str | os.PathLike, device_index: int | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise EngineLoadError(f"AOTInductor package {self.path} does not exist")
        try:
            kwargs = {} if device_index is None else {"device_index": device_index}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = torch._inductor.aoti_load_package(str(self.path), **kwargs)
        except Exception as exc:  # a damaged zip raises RuntimeError / BadZipFile / ... from deep inside
            raise EngineLoadError(
                f"AOTInductor package {self.path} cannot be loaded (truncated, corrupt, or built for another "
                f"torch/device?): {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
            ) from exc
        meta = read_sidecar(self.path)
        if meta is None:
            text = None
            try:
                text = self.model.get_metadata().get("fastpose")
            except Exception:  # older packages without a metadata accessor
                text = None
            if not text:
                raise EngineLoadError(f"AOTInductor package {self.path} carries no fastpose metadata and has no "
                                      f"{self.path.name}.json next to it")
            meta = EngineMetadata.from_json(text, str(self.path))
        self.metadata = meta

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.metadata.outputs]

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        meta = self.metadata
        resolve_dims(f"AOTInductor package {self.path.name}", meta.inputs, inputs, tuple(meta.batch_range),
                     device=meta.device, dim_ranges=meta.dim_ranges())
        out = self.model(*inputs)
        return tuple(out) if isinstance(out, (list, tuple)) else (out,)

    def parity(self, dep: Deployable, inputs: Sequence[Tensor], precision: str | None = None) -> ParityReport:
        """Compare with PyTorch eager ``dep`` in float32 (see :data:`~fastpose.engine.onnx.PARITY_TOLERANCES`)."""
        precision = precision or self.metadata.precision
        atol, rtol = PARITY_TOLERANCES[precision]
        ref = dep.to(torch.float32, device=inputs[0].device if inputs else "cpu")
        expected = ref(*[t.float() if t.is_floating_point() else t for t in inputs])
        return compare_outputs(self.output_names, self(*inputs), expected, atol, rtol)
