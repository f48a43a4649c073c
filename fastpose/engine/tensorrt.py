"""TensorRT engines built from the ONNX export, and a runner with torch CUDA tensors in and out.

.. warning::

   **This module has not been run.** TensorRT cannot be installed on the machines this
   repository was developed on, and they have no GPU. The code is written against the TensorRT
   10.x / 11.x Python API (name-based I/O tensors, ``execute_async_v3``, memory-pool limits,
   strongly typed networks) and its tests skip where ``tensorrt`` is not importable. Treat the
   first run on a GPU machine as its first test: ``pytest tests/engine -m gpu``.

Build (:func:`build_engine`)::

    ONNX file (fastpose.engine.onnx.export_onnx, precision fixed in the graph)
        -> tensorrt.OnnxParser -> strongly typed INetworkDefinition
        -> IBuilderConfig: workspace limit, one optimisation profile for the dynamic batch
           (min / opt / max), timing cache (read and written back)
        -> build_serialized_network -> <engine>.plan + <engine>.plan.json (metadata)

Precision: TensorRT 10.12 deprecated, and 11.0 removed, the "weakly typed" precision flags
(``BuilderFlag.FP16`` / ``BF16``). fastpose therefore always builds *strongly typed* networks: the
precision is the dtype of the ONNX graph, i.e. ``fastpose export --format tensorrt --precision
fp16`` exports the model in float16 (weights and activations; the fused ops' softmax and
reductions stay float32, see :mod:`fastpose.engine._onnx_ops`) and TensorRT keeps those types.
This works identically on TensorRT 10.x (``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` set
explicitly) and 11.x (where every network is strongly typed). BF16 needs an Ampere or newer GPU.

Run (:class:`TensorRTRunner`): deserialise the plan, one execution context, input shapes set per
call, tensor addresses bound to torch CUDA tensors (outputs allocated by torch), enqueued with
``execute_async_v3`` on the current torch CUDA stream (no host synchronisation; the caller
synchronises as for any CUDA work).

The metadata JSON records the TensorRT, CUDA, torch and ONNX versions, the GPU and its compute
capability, the precision, the input / output specs and the optimisation profile. A plan is only
valid for the TensorRT version and GPU it was built with; the runner says so when
deserialisation fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ._common import (
    BATCH,
    EngineLoadError,
    EngineMetadata,
    TensorSpec,
    dtype_name,
    now_iso,
    read_sidecar,
    resolve_dims,
    versions,
)
from ._models import Deployable

__all__ = [
    "TensorRTRunner",
    "build_engine",
    "import_tensorrt",
    "profile_shapes",
]

_INSTALL_HINT = (
    "TensorRT is not installed. On a machine with an NVIDIA GPU and driver: pip install tensorrt "
    "(TensorRT >= 10; see https://docs.nvidia.com/deeplearning/tensorrt/). The ONNX and AOTInductor "
    "engines need no TensorRT."
)


def import_tensorrt():
    """Import ``tensorrt`` (>= 10) lazily, or raise RuntimeError saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError(_INSTALL_HINT) from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise RuntimeError(f"TensorRT >= 10 is required (name-based I/O API), found {trt.__version__}")
    return trt


def _require_cuda(what: str) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError(f"{what}: TensorRT needs a CUDA GPU; torch.cuda.is_available() is False")


def profile_shapes(spec: TensorSpec, min_batch: int, opt_batch: int, max_batch: int,
                   dims: Mapping[str, tuple[int, int, int]] | None = None
                   ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one input for the optimisation profile of its dynamic dimensions.

    The batch takes ``min/opt/max_batch``; every other named dimension (``frames`` of the
    full-video SPGNet) its ``dims[name] = (min, opt, max)``.
    """
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(
            f"optimisation profile: expected 1 <= min_batch <= opt_batch <= max_batch, received "
            f"{min_batch}, {opt_batch}, {max_batch}"
        )
    dims = dict(dims or {})
    for name in spec.dynamic_names:
        if name == BATCH:
            continue
        if name not in dims:
            raise ValueError(f"optimisation profile: input '{spec.name}' {spec.pretty_shape()} has dynamic "
                             f"dimension '{name}' but no (min, opt, max) was given for it")
        lo, opt, hi = dims[name]
        if not 1 <= lo <= opt <= hi:
            raise ValueError(f"optimisation profile: expected 1 <= min <= opt <= max for '{name}', received "
                             f"{lo}, {opt}, {hi}")
    return tuple(spec.concrete_shape(b, {k: v[i] for k, v in dims.items()})
                 for i, b in enumerate((min_batch, opt_batch, max_batch)))


# Full-video engines: the largest frame count the default optimisation profile covers. TensorRT
# sizes its activation memory for the profile's maximum shape, so the ONNX file's 100,000 frames
# would ask for tens of GB; longer videos are run in chunks or built with ``dim_profiles``.
DEFAULT_MAX_FRAMES = 4096


def _torch_dtype(trt, dt) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT32: torch.int32,
             trt.DataType.BOOL: torch.bool, trt.DataType.INT8: torch.int8}
    for name, tdt in (("BF16", torch.bfloat16), ("INT64", torch.int64), ("UINT8", torch.uint8)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = tdt
    if dt not in table:
        raise RuntimeError(f"TensorRT tensor dtype {dt} has no torch equivalent")
    return table[dt]


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *, min_batch: int = 1,
                 opt_batch: int | None = None, max_batch: int | None = None, workspace_gib: float = 4.0,
                 timing_cache: str | os.PathLike | None = None, builder_optimization_level: int | None = None,
                 verbose: bool = False, dim_profiles: Mapping[str, tuple[int, int, int]] | None = None
                 ) -> EngineMetadata:
    """Build a serialised TensorRT engine (``engine_path``, e.g. ``model.plan``) from a fastpose ONNX file.

    The ONNX file's metadata (written by :func:`fastpose.engine.onnx.export_onnx`) gives the
    inputs, outputs and precision. ``min/opt/max_batch`` define the optimisation profile of the
    dynamic batch (defaults: 1, min(32, max), the ONNX file's maximum capped at 256);
    ``workspace_gib`` limits the builder's scratch memory; ``timing_cache`` is read if it exists
    and written back after the build (layer timings reused by later builds). ``dim_profiles``:
    ``{name: (min, opt, max)}`` of the other dynamic dimensions (default for ``frames``: the
    file's minimum, its default, and at most :data:`DEFAULT_MAX_FRAMES`).
    """
    from .onnx import load_metadata

    trt = import_tensorrt()
    _require_cuda("build_engine")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    onnx_meta = load_metadata(onnx_path)
    max_batch = int(max_batch or min(onnx_meta.batch_range[1], 256))
    opt_batch = int(opt_batch or min(32, max_batch))
    if max_batch > onnx_meta.batch_range[1]:
        raise ValueError(f"argument 'max_batch': the ONNX file accepts batches up to {onnx_meta.batch_range[1]}, "
                         f"received {max_batch}")
    if workspace_gib <= 0:
        raise ValueError(f"argument 'workspace_gib': expected > 0, received {workspace_gib}")
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # required on 10.x for typed precision; accepted (ignored) on 11.x
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineLoadError(f"TensorRT could not parse {onnx_path}:\n  {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if builder_optimization_level is not None:
        config.builder_optimization_level = int(builder_optimization_level)
    profile = builder.create_optimization_profile()
    specs = {s.name: s for s in onnx_meta.inputs}
    dims: dict[str, tuple[int, int, int]] = {}
    for spec in onnx_meta.inputs:
        for name in spec.dynamic_names:
            if name == BATCH or name in dims:
                continue
            if dim_profiles and name in dim_profiles:
                dims[name] = tuple(int(v) for v in dim_profiles[name])
                continue
            info = onnx_meta.dim_info(name)
            if info is None:
                raise ValueError(f"argument 'dim_profiles': {onnx_path} has dynamic dimension '{name}' without a "
                                 "range in its metadata; pass dim_profiles={name: (min, opt, max)}")
            hi = min(info["max"], DEFAULT_MAX_FRAMES)
            opt = min(max(info["default"] or info["min"], info["min"]), hi)
            dims[name] = (info["min"], opt, hi)
    profile_record = {}
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        if inp.name not in specs:
            raise EngineLoadError(f"{onnx_path}: network input {inp.name!r} is not in the file's metadata "
                                  f"{sorted(specs)}")
        lo, opt, hi = profile_shapes(specs[inp.name], min_batch, opt_batch, max_batch, dims)
        profile.set_shape(inp.name, lo, opt, hi)
        profile_record[inp.name] = {"min": list(lo), "opt": list(opt), "max": list(hi)}
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - t0
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(memoryview(serialized))
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    meta = EngineMetadata(
        format="tensorrt", model=onnx_meta.model, precision=onnx_meta.precision, device="cuda",
        inputs=onnx_meta.inputs, outputs=onnx_meta.outputs, batch_range=(min_batch, max_batch),
        dims={**({BATCH: {"min": min_batch, "max": max_batch, "default": opt_batch}}),
              **{k: {"min": v[0], "max": v[2], "default": v[1]} for k, v in dims.items()}},
        model_config=onnx_meta.model_config, versions=versions(), created=now_iso(),
        extra={
            "onnx": str(onnx_path), "onnx_versions": onnx_meta.versions, "profile": profile_record,
            "opt_batch": opt_batch, "dim_profiles": {k: list(v) for k, v in dims.items()},
            "workspace_gib": workspace_gib, "strongly_typed": True,
            "timing_cache": str(cache_path) if cache_path else None, "build_seconds": round(build_s, 3),
            "gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "tensorrt": trt.__version__,
        },
    )
    meta.write_sidecar(engine_path)
    return meta


class TensorRTRunner:
    """Run a serialised engine with torch CUDA tensors, validated against ``<engine>.json`` (or, for a
    plan built elsewhere without one, the I/O shapes and optimisation profile read from the engine).

    ``runner(*inputs)`` enqueues the engine on the current CUDA stream and returns torch CUDA
    tensors allocated for this call; it does not synchronise.
    """

    def __init__(self, engine_path: str | os.PathLike):
        self.path = Path(engine_path)
        if not self.path.exists():
            raise EngineLoadError(f"TensorRT engine {self.path} does not exist")
        meta = read_sidecar(self.path)
        trt = import_tensorrt()
        _require_cuda("TensorRTRunner")
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            built = (meta.extra.get("tensorrt", "?"), meta.extra.get("gpu", "?")) if meta else ("?", "?")
            raise EngineLoadError(
                f"TensorRT engine {self.path} cannot be deserialised (corrupt file, or built with TensorRT "
                f"{built[0]} on {built[1]}; this is TensorRT {trt.__version__} on "
                f"{torch.cuda.get_device_name()})"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if meta is None:  # a plan built elsewhere: shapes, dtypes and profile ranges from the engine itself
            meta = self._metadata_from_engine(trt, ins, outs)
        self.metadata = meta
        if sorted(ins) != sorted(s.name for s in meta.inputs) or sorted(outs) != sorted(s.name for s in meta.outputs):
            raise EngineLoadError(f"TensorRT engine {self.path}: I/O tensors {ins} -> {outs} do not match its metadata")
        self._out_dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in outs}

    def _metadata_from_engine(self, trt, ins: list[str], outs: list[str]) -> EngineMetadata:
        """Metadata read from a plan that has no ``<plan>.json``: I/O shapes (-1 = dynamic; dim 0 is
        the batch, others ``<tensor>_dim<k>``), dtypes, and each dynamic dimension's range and
        default from optimisation profile 0 (min, max; default = opt)."""
        dims: dict[str, dict[str, int]] = {}

        def spec(name: str, is_input: bool) -> TensorSpec:
            shape = list(self.engine.get_tensor_shape(name))
            prof = self.engine.get_tensor_profile_shape(name, 0) if is_input and -1 in shape else None
            named: list[int | str] = []
            for k, d in enumerate(shape):
                if d != -1:
                    named.append(int(d))
                    continue
                dim_name = BATCH if k == 0 else f"{name}_dim{k}"
                named.append(dim_name)
                if prof is not None:
                    dims.setdefault(dim_name, {"min": int(prof[0][k]), "default": int(prof[1][k]),
                                               "max": int(prof[2][k])})
            dtype = dtype_name(_torch_dtype(trt, self.engine.get_tensor_dtype(name)))
            return TensorSpec(name, tuple(named), dtype)

        in_specs = [spec(n, True) for n in ins]
        out_specs = [spec(n, False) for n in outs]
        batch = dims.get(BATCH, {"min": 1, "max": 1})
        precision = {"float16": "fp16", "bfloat16": "bf16"}.get(in_specs[0].dtype if in_specs else "", "fp32")
        return EngineMetadata("tensorrt", "unknown", precision, "cuda", in_specs, out_specs,
                              batch_range=(batch["min"], batch["max"]), dims=dims,
                              extra={"metadata_source": "engine"})

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.metadata.outputs]

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        meta = self.metadata
        resolve_dims(f"TensorRT engine {self.path.name}", meta.inputs, inputs, tuple(meta.batch_range),
                     device="cuda", dim_ranges=meta.dim_ranges())
        keep = []
        for spec, t in zip(meta.inputs, inputs, strict=True):
            t = t.contiguous()
            keep.append(t)  # alive until enqueued; the caching allocator orders reuse on the stream
            self.context.set_input_shape(spec.name, tuple(t.shape))
            self.context.set_tensor_address(spec.name, t.data_ptr())
        outs = []
        for spec in meta.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            o = torch.empty(shape, dtype=self._out_dtypes[spec.name], device=inputs[0].device)
            self.context.set_tensor_address(spec.name, o.data_ptr())
            outs.append(o)
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError(f"TensorRT engine {self.path.name}: execute_async_v3 failed (see the TensorRT log)")
        return tuple(outs)

    def parity(self, dep: Deployable, inputs: Sequence[Tensor], precision: str | None = None):
        """Compare with PyTorch eager ``dep`` in float32 on the GPU within PARITY_TOLERANCES."""
        from .onnx import PARITY_TOLERANCES, compare_outputs

        precision = precision or self.metadata.precision
        atol, rtol = PARITY_TOLERANCES[precision]
        ref = dep.to(torch.float32, device="cuda")
        expected = ref(*[t.float() if t.is_floating_point() else t for t in inputs])
        actual = self(*inputs)
        torch.cuda.synchronize()
        return compare_outputs(self.output_names, actual, expected, atol, rtol)
