"""ONNX export of the models and of each fused op, ``onnx.checker``, and an ONNX Runtime runner.

Export path (torch 2.13, onnxscript 0.7.2)::

    Deployable --torch.export (use_backend("reference"), dynamic batch)--> ExportedProgram
        --torch.onnx.export(dynamo=True, custom_translation_table=<the table>)--> ONNX (opset 18)

The fused ops are ``torch.library`` custom ops, opaque to the exporter; exporting under the
reference backend leaves one known custom op per fused op in the graph
(``fastpose::<op>_reference``), and the one translation table of
:mod:`fastpose.engine._onnx_ops` lowers each to standard ONNX operators (Softmax,
ReduceLogSumExp, ReduceSum, MatMul, Exp, Clip, ...). The file therefore needs no custom-op
library in ONNX Runtime, TensorRT or any other runtime; :func:`check_onnx` verifies that every node
belongs to the default ONNX domain. (The alternative -- decomposing the custom ops into aten and
letting torchlib translate those -- also works, and is what the AOTInductor path does; the table
gives compact graphs built from the operators TensorRT and ONNX Runtime fuse best.) The
exporter's registry (torchlib + the table) is built once per process and reused: that is what
``torch.onnx.export(custom_translation_table=...)`` does on each call, minus ~2 s of rebuilding.

Files: one self-contained ``.onnx`` (weights inside) unless the model exceeds protobuf's 2 GB,
plus ``<file>.json`` metadata (also stored in the model's ``metadata_props["fastpose"]``).

ONNX Runtime against eager PyTorch on SPGNet-243 (1024 channels, fp32, CPU)
------------------------------------------------------------------------------
Symptom: exported as written (SPGNet's strided Conv1d windows model), ONNX Runtime ran batch-32
windows *slower* than eager (0.65x reported in issue 14). Method: ``python -m
fastpose.engine._ort_study`` -- same weights and inputs, one call of every variant in turn (order
rotated per call), 7 repeats x 4 calls, 1 thread, timed by wall clock and by process CPU time;
the development VM was shared (load average 5-9 on 2 cores, wall times 2-4x the CPU times), so
the CPU-time ratios are the ones to read; min..max over repeats in brackets:

=====================================================  ===========================
variant (batch 32, 1 thread)                           CPU time, speed-up vs eager
=====================================================  ===========================
eager PyTorch, strided Conv1d (the reference)          85.8 ms, 1.00x
ORT, Conv graph, fastpose's session options            0.80x (0.75..0.82)
... with thread spin-waiting on (ORT's default)        0.81x (0.75..0.84)
... graph optimisation BASIC / EXTENDED (not ALL)      0.80x / 0.82x
... static batch 32 instead of a dynamic batch         0.77x (0.71..0.80)
... BatchNorm left unfolded (no onnxscript optimiser)  0.78x (0.72..0.83)
**ORT, the GEMM rewrite (what export_onnx writes)**    **1.49x (1.38..1.55)**
eager, the same GEMM rewrite                           0.73x (0.68..0.74)
full-video layout (one 274-frame clip -> the same 32   eager 1.72x, ORT 2.46x
frames; ``spgnet-video``)
=====================================================  ===========================

At batch 1 (7 x 10 calls): Conv graph 2.89x eager, GEMM rewrite 3.18x (3.08..3.30). No session
setting moves the Conv graph (threads, spinning, optimisation level, static shapes, BN folding
all within the noise of 0.80x); the layout does. Cause: ONNX Runtime's CPU Conv runs one
im2col + SGEMM *per sample* (a loop over the batch), whose N dimension is that sample's output
length. In the strided model those lengths are 81, 27, 9, 3 and 1 positions, so the 1024 x 3072
weight matrices (12 MB) are streamed once per window for a product only 1-27 columns wide --
matrix-vector shaped, bound by memory. oneDNN (eager) folds the batch into its convolution.
Writing each stride-w, width-w convolution as a reshape of channels-last activations, (B, L, C)
-> (B, L / w, w C), and one MatMul puts all B x L / w positions into the rows of a single GEMM;
BatchNorm is folded into the weights at export (``_models._SPGNetWindowsGemm``; parity with the
eager model is tested). In the full-video layout the convolutions already have long outputs
(~250 positions), and ORT beats eager there as exported (34.9 vs 49.5 ms CPU per 32 frames).
With 2 threads on the loaded VM the spinning intra-op pool cost 1.7x CPU time (eager's OpenMP
pool did worse still), hence :class:`OnnxRunner`'s ``spin=False`` default.

Parity tolerances (:data:`PARITY_TOLERANCES`, ``max|engine - torch| <= atol + rtol * max|torch|``
per output): fp32 engines against fp32 PyTorch eager ``(1e-4, 1e-4)`` -- ONNX Runtime's float32
kernels reorder sums, measured errors are ~1e-6 relative; fp16 / bf16 engines against fp32
PyTorch ``(1e-2, 2e-2)`` / ``(2e-2, 6e-2)``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ._common import (
    BATCH,
    EngineLoadError,
    EngineMetadata,
    TensorSpec,
    now_iso,
    read_sidecar,
    resolve_dims,
    versions,
)
from ._export import export_program, metadata_dims
from ._models import Deployable

__all__ = [
    "PARITY_TOLERANCES",
    "OnnxRunner",
    "ParityReport",
    "check_onnx",
    "compare_outputs",
    "export_onnx",
]

PARITY_TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (1e-4, 1e-4),
    "fp16": (1e-2, 2e-2),
    "bf16": (2e-2, 6e-2),
}

_PRECISION_OF = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


# ------------------------------------------------------------------------------------------ parity
@dataclasses.dataclass
class ParityReport:
    """Per-output comparison of an engine with PyTorch: ``max_abs`` and the allowed bound."""

    outputs: dict[str, dict[str, float]]
    atol: float
    rtol: float

    @property
    def ok(self) -> bool:
        return all(o["max_abs"] <= o["bound"] for o in self.outputs.values())

    def summary(self) -> str:
        parts = [f"{k}: max|diff| {v['max_abs']:.3e} (bound {v['bound']:.3e})" for k, v in self.outputs.items()]
        return ("OK  " if self.ok else "FAIL ") + "; ".join(parts)

    def raise_if_failed(self, what: str = "engine") -> ParityReport:
        if not self.ok:
            raise AssertionError(f"{what} parity with PyTorch failed: {self.summary()}")
        return self

    def to_dict(self) -> dict:
        return {"ok": self.ok, "atol": self.atol, "rtol": self.rtol, "outputs": self.outputs}


def compare_outputs(names: Sequence[str], actual: Sequence[Tensor], expected: Sequence[Tensor],
                    atol: float, rtol: float) -> ParityReport:
    """max|actual - expected| per output against ``atol + rtol * max|expected|`` (in float64)."""
    if len(actual) != len(expected):
        raise ValueError(f"compare_outputs: {len(actual)} engine outputs vs {len(expected)} PyTorch outputs")
    out = {}
    for name, a, e in zip(names, actual, expected, strict=True):
        a64, e64 = a.detach().cpu().double(), e.detach().cpu().double()
        if a64.shape != e64.shape:
            raise ValueError(f"compare_outputs: output '{name}' has shape {tuple(a64.shape)}, PyTorch {tuple(e64.shape)}")
        finite = bool(torch.isfinite(a64).all())
        diff = (a64 - e64).abs().max().item() if a64.numel() else 0.0
        scale = e64.abs().max().item() if e64.numel() else 0.0
        out[name] = {"max_abs": diff if finite else float("inf"), "scale": scale, "bound": atol + rtol * scale}
    return ParityReport(out, atol, rtol)


# ------------------------------------------------------------------------------------------ export
def _onnx_domains_ok(model) -> list[str]:
    """Nodes outside the default ONNX domain (there must be none: no custom ops in the file)."""
    bad = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            bad.append(f"{node.op_type} (domain {node.domain!r})")
    for fn in model.functions:  # onnxscript may keep local functions; their bodies count too
        for node in fn.node:
            if node.domain not in ("", "ai.onnx", fn.domain):
                bad.append(f"{node.op_type} (domain {node.domain!r}, in function {fn.name})")
    return bad


def check_onnx(path: str | os.PathLike) -> None:
    """``onnx.checker.check_model(full_check=True)`` (with shape inference) + standard operators only.

    Raises :class:`EngineLoadError` naming the file and the checker's complaint.
    """
    import onnx

    path = Path(path)
    if not path.exists():
        raise EngineLoadError(f"ONNX file {path} does not exist")
    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises ValidationError, DecodeError, InferenceError...
        raise EngineLoadError(f"ONNX file {path} failed onnx.checker: {type(exc).__name__}: {exc}") from exc
    bad = _onnx_domains_ok(model)
    if bad:
        raise EngineLoadError(f"ONNX file {path} contains non-standard operators: {bad}")


def _output_specs(dep: Deployable, inputs: Sequence[Tensor], dynamic_batch: bool) -> list[TensorSpec]:
    outs = dep(*inputs)
    axes = list(dep.output_axes) or [{} for _ in outs]
    return [TensorSpec.of(n, t, dynamic_batch and t.dim() > 0, a)
            for n, t, a in zip(dep.output_names, outs, axes, strict=True)]


def _input_specs(dep: Deployable, inputs: Sequence[Tensor], dynamic_batch: bool) -> list[TensorSpec]:
    axes = list(dep.input_axes) or [{} for _ in inputs]
    return [TensorSpec.of(n, t, dynamic_batch, a) for n, t, a in zip(dep.input_names, inputs, axes, strict=True)]


# False: always take the public torch.onnx.export path (the tests exercise both).
_USE_CACHED_REGISTRY = True


@functools.lru_cache(maxsize=4)
def _registry(opset: int):
    """torchlib's ONNX registry for ``opset`` plus the fused-op translation table, built once per process.

    (torch.onnx.export rebuilds it on every call, parsing ~500 torchlib functions: ~2 s.)
    """
    from torch.onnx._internal.exporter import _registration

    from ._onnx_ops import translation_table

    registry = _registration.ONNXRegistry.from_torchlib(opset_version=opset)
    for torch_op, fn in translation_table().items():
        registry.register_op(torch_op, fn, is_complex=False)
    return registry


def _to_onnx_program(ep: torch.export.ExportedProgram, opset: int, input_names, output_names,
                     optimize: bool = True):
    """ExportedProgram -> ONNXProgram with the fused ops lowered by the translation table.

    Uses the exporter's core with a cached registry; if that private API is not there (another
    torch version), the public ``torch.onnx.export(..., custom_translation_table=...)``, which
    does the same with a fresh registry.
    """
    from ._onnx_ops import translation_table

    reg_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = reg_log.level
    reg_log.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms" x4
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's FutureWarnings about pytree internals
            try:
                from torch.onnx._internal.exporter import _core

                core_export = _core.export
                if not _USE_CACHED_REGISTRY or "registry" not in inspect.signature(core_export).parameters:
                    core_export = None
            except (ImportError, AttributeError):
                core_export = None
            if core_export is not None:
                return core_export(ep, (), None, registry=_registry(opset), input_names=list(input_names),
                                   output_names=list(output_names), verbose=False, optimize=optimize,
                                   opset_version=opset)
            return torch.onnx.export(
                ep, (), dynamo=True, custom_translation_table=translation_table(), opset_version=opset,
                input_names=list(input_names), output_names=list(output_names), verbose=False,
                optimize=optimize,
            )
    finally:
        reg_log.setLevel(level)


def export_onnx(dep: Deployable, path: str | os.PathLike, *, inputs: Sequence[Tensor] | None = None,
                batch: int = 2, dynamic_batch: bool = True, max_batch: int = 1024, opset: int | None = None,
                device: str = "cpu", check: bool = True, extra: dict | None = None,
                rewrite: bool = True) -> EngineMetadata:
    """Export ``dep`` to the ONNX file ``path``; returns (and writes next to it) its metadata.

    ``inputs``: example inputs (default: ``dep.example_inputs(batch)``; batch >= 2 for a dynamic
    batch). ``opset``: default 18; bfloat16 models need >= 22 (the first opset whose Conv,
    Gemm, ... accept bfloat16) and default to 22. ``device``: where the model is traced ('cuda'
    for half precision models too slow on a CPU; the file itself runs anywhere). With ``check``,
    :func:`check_onnx` runs on the written file.

    bfloat16 models are exported without the onnxscript graph optimiser: its BatchNorm-into-Conv
    fusion writes the fused weights in float32 (onnxscript 0.7.2), which leaves Conv nodes with
    mixed bfloat16 / float32 inputs that the checker (and TensorRT) reject. TensorRT folds the
    BatchNormalization nodes itself.

    ``rewrite``: export ``dep.onnx_rewrite(dep.module)`` where the deployable has one -- the same
    function written for ONNX Runtime's kernels (SPGNet's windows model as channels-last GEMMs
    with folded BatchNorm, see the module docstring); ``False`` exports the module as written.
    """
    bf16 = dep.dtype == torch.bfloat16
    opset = (22 if bf16 else 18) if opset is None else int(opset)
    if opset < 18 or (bf16 and opset < 22):
        raise ValueError(f"argument 'opset': expected >= {22 if bf16 else 18}"
                         f"{' for a bfloat16 model' if bf16 else ''}, received {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if device != "cpu":
        dep = dep.to(device=device)
    inputs = tuple(t.to(device) for t in (inputs if inputs is not None else dep.example_inputs(batch)))
    graph = "as written"
    if rewrite and dep.onnx_rewrite is not None:
        module = dep.onnx_rewrite(dep.module)
        graph = f"rewritten for ONNX Runtime: {type(module).__name__}"
        dep = dataclasses.replace(dep, module=module, onnx_rewrite=None)
    ep = export_program(dep, inputs, dynamic_batch=dynamic_batch, max_batch=max_batch)
    in_specs = _input_specs(dep, inputs, dynamic_batch)
    out_specs = _output_specs(dep, inputs, dynamic_batch)
    program = _to_onnx_program(ep, opset, dep.input_names, dep.output_names, optimize=not bf16)
    batch_range = (1, max_batch) if dynamic_batch else (inputs[0].shape[0],) * 2
    meta = EngineMetadata(
        format="onnx", model=dep.name, precision=_PRECISION_OF.get(dep.dtype, str(dep.dtype)), device="any",
        inputs=in_specs, outputs=out_specs, batch_range=batch_range,
        dims=metadata_dims(dep, dynamic_batch, batch_range),
        model_config=dep.config, versions=versions(), created=now_iso(),
        extra={"opset": opset, "optimized": not bf16, "graph": graph,
               "exporter": "torch.onnx.export(dynamo=True) + fastpose translation table",
               **(extra or {})},
    )
    program.model.metadata_props["fastpose"] = meta.to_json()
    program.save(str(path))  # one file unless > 2 GB (then weights go to external data)
    meta.write_sidecar(path)
    if check:
        check_onnx(path)
    return meta


# ------------------------------------------------------------------------------------------ runner
def _np_dtype(dtype: torch.dtype):
    import numpy as np

    table = {torch.float32: np.float32, torch.float16: np.float16, torch.float64: np.float64,
             torch.int64: np.int64, torch.int32: np.int32, torch.uint8: np.uint8, torch.bool: np.bool_}
    if dtype not in table:
        raise ValueError(f"ONNX Runtime runner: tensors of dtype {dtype} cannot be bound (numpy has no such "
                         "type); bf16 ONNX files are meant for TensorRT (fastpose export --format tensorrt)")
    return table[dtype]


class OnnxRunner:
    """Run an exported ONNX file in ONNX Runtime with torch tensors in and out.

    ``providers``: ONNX Runtime execution providers (default: CUDA first when the installed
    onnxruntime has it and a GPU is present, else CPU). ``threads``: intra-op threads (default:
    ONNX Runtime's). ``spin``: let idle intra-op threads spin-wait for work (ONNX Runtime's own
    default); off by default here because on a CPU shared with other work the spinning threads
    take cores from the threads doing the work (SPGNet-243, batch 32, 2 threads on the loaded
    development VM: 2.4x eager with spinning, 4.1x without, process CPU time; with 1 thread
    there is no pool and it makes no difference). Inter-op parallelism stays off (one thread):
    the graphs are chains of large operators. Inputs are validated against the file's metadata (sidecar JSON, else the
    copy inside the file): a wrong shape, dtype or batch raises ValueError naming the input.
    Inputs and outputs are bound in place (IOBinding), outputs are torch tensors on the input's
    device.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None,
                 threads: int | None = None, spin: bool = False):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a pinned dependency
            raise RuntimeError("onnxruntime is not installed (pip install 'onnxruntime'); it runs the ONNX engines") from exc
        self.path = Path(path)
        if not self.path.exists():
            raise EngineLoadError(f"ONNX engine {self.path} does not exist")
        avail = ort.get_available_providers()
        if providers is None:
            providers = (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in avail and torch.cuda.is_available()
                         else []) + ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in avail]
        if missing:
            raise ValueError(f"argument 'providers': {missing} not available in this onnxruntime (available: {avail})")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=list(providers))
        except Exception as exc:  # ORT raises InvalidProtobuf, Fail, NotImplemented, ...
            text = str(exc)
            hint = ("an operator or dtype ONNX Runtime has no kernel for on "
                    f"{list(providers)} (bfloat16 files are meant for TensorRT)" if "NOT_IMPLEMENTED" in text
                    else "truncated or not an ONNX model?")
            raise EngineLoadError(
                f"ONNX engine {self.path} cannot be loaded by ONNX Runtime ({hint}): {type(exc).__name__}: {text}"
            ) from exc
        meta = read_sidecar(self.path)
        if meta is None:
            text = self.session.get_modelmeta().custom_metadata_map.get("fastpose")
            meta = EngineMetadata.from_json(text, str(self.path)) if text else self._metadata_from_session()
        self.metadata = meta
        self.providers = self.session.get_providers()
        names = [i.name for i in self.session.get_inputs()]
        if names != [s.name for s in meta.inputs]:
            raise EngineLoadError(f"ONNX engine {self.path}: inputs {names} do not match its metadata "
                                  f"{[s.name for s in meta.inputs]} (stale sidecar JSON?)")
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"

    def _metadata_from_session(self) -> EngineMetadata:
        """Specs read from the session when the file carries no fastpose metadata."""
        types = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
                 "tensor(int64)": "int64", "tensor(bfloat16)": "bfloat16"}

        def spec(i):
            # dimension 0 is the batch; other symbolic dimensions keep the file's name for them
            shape = tuple(d if isinstance(d, int) else (BATCH if k == 0 else str(d or f"{i.name}_dim{k}"))
                          for k, d in enumerate(i.shape))
            return TensorSpec(i.name, shape, types.get(i.type, "float32"))

        return EngineMetadata("onnx", "unknown", "fp32", "cpu", [spec(i) for i in self.session.get_inputs()],
                              [spec(o) for o in self.session.get_outputs()])

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.metadata.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.metadata.outputs]

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        meta = self.metadata
        sizes = resolve_dims(f"ONNX engine {self.path.name}", meta.inputs, inputs, tuple(meta.batch_range),
                             dim_ranges=meta.dim_ranges())
        dev = inputs[0].device if inputs else torch.device("cpu")
        if dev.type != self.device:
            raise ValueError(f"ONNX engine {self.path.name}: inputs must be on '{self.device}' "
                             f"(providers {self.providers}), received '{dev}'")
        binding = self.session.io_binding()
        keep = []
        for spec, t in zip(meta.inputs, inputs, strict=True):
            t = t.detach().contiguous()
            keep.append(t)
            binding.bind_input(spec.name, dev.type, dev.index or 0, _np_dtype(t.dtype), list(t.shape), t.data_ptr())
        outs: list[Tensor | None] = []
        for spec in meta.outputs:
            if any(d not in sizes for d in spec.dynamic_names):
                # a size the inputs do not determine (a file not exported by fastpose): ORT allocates it
                binding.bind_output(spec.name, dev.type, dev.index or 0)
                outs.append(None)
                continue
            o = torch.empty(spec.concrete_shape(sizes["batch"], sizes), dtype=spec.torch_dtype, device=dev)
            binding.bind_output(spec.name, dev.type, dev.index or 0, _np_dtype(o.dtype), list(o.shape), o.data_ptr())
            outs.append(o)
        self.session.run_with_iobinding(binding)
        if any(o is None for o in outs):
            ort_outs = binding.get_outputs()
            outs = [o if o is not None else torch.from_numpy(ort_outs[k].numpy()).to(dev)
                    for k, o in enumerate(outs)]
        return tuple(outs)

    def parity(self, dep: Deployable, inputs: Sequence[Tensor], precision: str | None = None) -> ParityReport:
        """Compare with PyTorch eager ``dep`` (float32) on ``inputs`` within :data:`PARITY_TOLERANCES`."""
        precision = precision or self.metadata.precision
        atol, rtol = PARITY_TOLERANCES[precision]
        ref_dep = dep if dep.dtype == torch.float32 else dep.to(torch.float32)
        expected = ref_dep(*[t.float() if t.is_floating_point() else t for t in inputs])
        return compare_outputs(self.output_names, self(*inputs), expected, atol, rtol)


def load_metadata(path: str | os.PathLike) -> EngineMetadata:
    """Metadata of an ONNX file: its sidecar JSON, else the copy in ``metadata_props``."""
    import onnx

    meta = read_sidecar(path)
    if meta is not None:
        return meta
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise EngineLoadError(f"ONNX file {path} cannot be read: {type(exc).__name__}: {exc}") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if "fastpose" not in props:
        raise EngineLoadError(f"ONNX file {path} carries no fastpose metadata (not exported by fastpose?)")
    return EngineMetadata.from_json(props["fastpose"], str(path))
