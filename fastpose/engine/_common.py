"""Shared machinery of the deployment engines: tensor specs, engine metadata, input checks.

Every engine file (ONNX model, AOTInductor package, TensorRT plan) is described by an
:class:`EngineMetadata` record, written as a JSON *sidecar* next to it (``<engine>.json``) and,
where the format allows, also stored inside the file (ONNX ``metadata_props``, AOTInductor
package metadata). A runner checks every call's inputs against the record's :class:`TensorSpec`
list, so a wrong shape or dtype fails with a message naming the input instead of a backend error.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "BATCH",
    "FRAMES",
    "PRECISIONS",
    "EngineLoadError",
    "EngineMetadata",
    "TensorSpec",
    "check_inputs",
    "precision_dtype",
    "read_sidecar",
    "resolve_dims",
    "sidecar_path",
    "versions",
]

BATCH = "batch"  # name of the dynamic (batch) dimension in every spec and exported file
FRAMES = "frames"  # name of the dynamic time dimension of the full-video SPGNet export

# --precision name -> torch dtype of the exported weights, inputs and outputs.
PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}

_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float64: "float64",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.uint8: "uint8",
    torch.bool: "bool",
}
_NAMES_DTYPE = {v: k for k, v in _DTYPE_NAMES.items()}


class EngineLoadError(RuntimeError):
    """An engine file is missing, truncated, corrupt or was built for something else."""


def precision_dtype(precision: str) -> torch.dtype:
    """'fp32' | 'fp16' | 'bf16' -> torch dtype; anything else raises ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"argument 'precision': expected one of {sorted(PRECISIONS)}, received {precision!r}")
    return PRECISIONS[precision]


def dtype_name(dtype: torch.dtype) -> str:
    if dtype not in _DTYPE_NAMES:
        raise ValueError(f"unsupported engine tensor dtype {dtype}")
    return _DTYPE_NAMES[dtype]


def dtype_from_name(name: str) -> torch.dtype:
    if name not in _NAMES_DTYPE:
        raise ValueError(f"unknown dtype name {name!r}; expected one of {sorted(_NAMES_DTYPE)}")
    return _NAMES_DTYPE[name]


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one engine input or output.

    ``shape`` holds ints for static dimensions and a name for each dynamic one: ``"batch"``
    (always dimension 0 in fastpose's engines) and, in the full-video SPGNet export,
    ``"frames"`` (dimension 1). A name shared by several inputs / outputs is one size.
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # a torch dtype name: "float32", "float16", ...

    @property
    def torch_dtype(self) -> torch.dtype:
        return dtype_from_name(self.dtype)

    @property
    def dynamic_names(self) -> tuple[str, ...]:
        """Names of the dynamic dimensions, in order (e.g. ``("batch", "frames")``)."""
        return tuple(d for d in self.shape if isinstance(d, str))

    def concrete_shape(self, batch: int, dims: Mapping[str, int] | None = None) -> tuple[int, ...]:
        """The shape with ``"batch"`` -> ``batch`` and every other named dimension from ``dims``."""
        sizes = {BATCH: batch, **(dims or {})}
        missing = [d for d in self.dynamic_names if d not in sizes]
        if missing:
            raise ValueError(f"tensor '{self.name}' {self.pretty_shape()}: no size given for dynamic "
                             f"dimension(s) {missing}")
        return tuple(int(sizes[d]) if isinstance(d, str) else int(d) for d in self.shape)

    def pretty_shape(self) -> str:
        return "(" + ", ".join(str(d) for d in self.shape) + ")"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: Mapping) -> TensorSpec:
        return cls(str(d["name"]), tuple(x if isinstance(x, str) else int(x) for x in d["shape"]), str(d["dtype"]))

    @classmethod
    def of(cls, name: str, t: torch.Tensor, dynamic_batch: bool = True,
           axes: Mapping[int, str] | None = None) -> TensorSpec:
        """Spec of an example tensor; dimension 0 becomes ``"batch"`` when ``dynamic_batch``, and
        each ``axes`` entry ``{dim: name}`` (other than dim 0) makes that dimension dynamic too."""
        shape: list[int | str] = list(t.shape)
        if dynamic_batch and shape:
            shape[0] = BATCH
        for dim, dim_name in (axes or {}).items():
            if dim != 0:
                shape[dim] = dim_name
        return cls(name, tuple(shape), dtype_name(t.dtype))


@dataclasses.dataclass
class EngineMetadata:
    """Everything needed to run an engine file and to know what it is.

    format: "onnx" | "aoti" | "tensorrt"; model: "spgnet" | "volumetric" | "op:<name>" | free text;
    model_config: the architecture record (for the models: their config ``to_dict()``);
    precision: "fp32" | "fp16" | "bf16"; device: "cpu" | "cuda"; batch_range: (min, max) of the
    dynamic batch the file accepts; dims: every dynamic dimension by name, ``{"batch": {"min",
    "max", "default"}, "frames": {...}}`` (``default``: the size ``fastpose latency FILE`` times
    when not told; files written before this field existed have only ``batch_range``, see
    :meth:`dim_info`); versions: library versions at build time (see :func:`versions`);
    extra: format-specific details (opset, TensorRT optimisation profile, ...).
    """

    format: str
    model: str
    precision: str
    device: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batch_range: tuple[int, int] = (1, 1024)
    model_config: dict = dataclasses.field(default_factory=dict)
    versions: dict = dataclasses.field(default_factory=dict)
    created: str = ""
    extra: dict = dataclasses.field(default_factory=dict)
    dims: dict = dataclasses.field(default_factory=dict)

    def dim_info(self, name: str) -> dict | None:
        """``{"min", "max", "default"}`` of the dynamic dimension ``name``, or None when unknown.

        ``batch`` falls back to ``batch_range`` with default = its minimum (older files).
        """
        info = self.dims.get(name)
        if info is not None:
            return {"min": int(info["min"]), "max": int(info["max"]),
                    "default": None if info.get("default") is None else int(info["default"])}
        if name == BATCH:
            return {"min": int(self.batch_range[0]), "max": int(self.batch_range[1]), "default": None}
        return None

    def dim_ranges(self) -> dict[str, tuple[int, int]]:
        """(min, max) of every named dynamic dimension of the inputs (batch included)."""
        out = {}
        for spec in self.inputs:
            for d in spec.dynamic_names:
                info = self.dim_info(d)
                if info is not None:
                    out[d] = (info["min"], info["max"])
        return out

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "model": self.model,
            "precision": self.precision,
            "device": self.device,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "batch_range": list(self.batch_range),
            "model_config": self.model_config,
            "versions": self.versions,
            "created": self.created,
            "extra": self.extra,
            "dims": self.dims,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str)

    @classmethod
    def from_dict(cls, d: Mapping) -> EngineMetadata:
        try:
            return cls(
                format=str(d["format"]),
                model=str(d["model"]),
                precision=str(d["precision"]),
                device=str(d.get("device", "cpu")),
                inputs=[TensorSpec.from_dict(s) for s in d["inputs"]],
                outputs=[TensorSpec.from_dict(s) for s in d["outputs"]],
                batch_range=tuple(int(x) for x in d.get("batch_range", (1, 1024))),
                model_config=dict(d.get("model_config", {})),
                versions=dict(d.get("versions", {})),
                created=str(d.get("created", "")),
                extra=dict(d.get("extra", {})),
                dims={str(k): dict(v) for k, v in dict(d.get("dims", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineLoadError(f"engine metadata is incomplete or malformed ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> EngineMetadata:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EngineLoadError(f"{source}: not valid JSON ({exc})") from exc
        if not isinstance(d, dict):
            raise EngineLoadError(f"{source}: expected a JSON object, got {type(d).__name__}")
        return cls.from_dict(d)

    def write_sidecar(self, engine_path: str | Path) -> Path:
        path = sidecar_path(engine_path)
        path.write_text(self.to_json() + "\n")
        return path


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json`` (the metadata file written next to every engine)."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def read_sidecar(engine_path: str | Path) -> EngineMetadata | None:
    """The sidecar metadata of ``engine_path``, or None when there is none."""
    path = sidecar_path(engine_path)
    if not path.exists():
        return None
    return EngineMetadata.from_json(path.read_text(), source=str(path))


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _git_revision() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, Any]:
    """Versions of everything an engine depends on (recorded in metadata and latency JSON)."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, Any]:
    import fastpose

    out: dict[str, Any] = {
        "fastpose": fastpose.__version__,
        "git": _git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for mod in ("onnx", "onnxscript", "onnxruntime", "tensorrt"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # optional dependencies: record that they are absent
            out[mod] = None
    return out


def check_inputs(engine: str, specs: Sequence[TensorSpec], args: Sequence[Any],
                 batch_range: tuple[int, int] | None = None,
                 device: str | None = None, dim_ranges: Mapping[str, tuple[int, int]] | None = None) -> int:
    """Validate call arguments against the engine's input specs; return the batch size.

    See :func:`resolve_dims` (which this calls) for the checks and errors.
    """
    return resolve_dims(engine, specs, args, batch_range, device, dim_ranges)[BATCH]


def resolve_dims(engine: str, specs: Sequence[TensorSpec], args: Sequence[Any],
                 batch_range: tuple[int, int] | None = None, device: str | None = None,
                 dim_ranges: Mapping[str, tuple[int, int]] | None = None) -> dict[str, int]:
    """Validate call arguments against the engine's input specs; return every dynamic size by name.

    ``{"batch": B, "frames": T, ...}`` (batch 1 when no input has a batch dimension). Raises
    TypeError for a non-tensor, ValueError for a wrong count, rank, static dimension, dtype,
    device, a dynamic size that differs between inputs or lies outside ``batch_range`` /
    ``dim_ranges[name]``, each message naming the input, the expected and the received value.
    """
    if len(args) != len(specs):
        names = ", ".join(s.name for s in specs)
        raise ValueError(f"{engine}: expected {len(specs)} input(s) ({names}), received {len(args)}")
    sizes: dict[str, int] = {}
    first: dict[str, str] = {}
    for spec, t in zip(specs, args, strict=True):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{engine}: input '{spec.name}' must be a torch.Tensor, received {type(t).__name__}")
        want = spec.torch_dtype
        if t.dtype != want:
            raise ValueError(f"{engine}: input '{spec.name}' must have dtype {want}, received {t.dtype}")
        if t.dim() != len(spec.shape) or any(
            not isinstance(d, str) and int(d) != s for d, s in zip(spec.shape, t.shape, strict=True)
        ):
            raise ValueError(
                f"{engine}: input '{spec.name}' must have shape {spec.pretty_shape()}, "
                f"received {tuple(t.shape)}"
            )
        if device is not None and t.device.type != device:
            raise ValueError(f"{engine}: input '{spec.name}' must be on device '{device}', received '{t.device}'")
        for d, s in zip(spec.shape, t.shape, strict=True):
            if isinstance(d, str):
                if d in sizes and s != sizes[d]:
                    raise ValueError(
                        f"{engine}: input '{spec.name}' has {d} {s}, but input '{first[d]}' has {d} {sizes[d]}"
                    )
                sizes.setdefault(d, int(s))
                first.setdefault(d, spec.name)
    sizes.setdefault(BATCH, 1)
    ranges = dict(dim_ranges or {})
    if batch_range is not None:
        ranges[BATCH] = tuple(batch_range)
    for d, (lo, hi) in ranges.items():
        if d in sizes and not lo <= sizes[d] <= hi:
            what = "batch size" if d == BATCH else f"dimension '{d}'"
            raise ValueError(
                f"{engine}: {what} must be in [{lo}, {hi}] (the range the engine was built for), "
                f"received {sizes[d]}"
            )
    return sizes
