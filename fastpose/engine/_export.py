"""torch.export of a :class:`~fastpose.engine._models.Deployable`, shared by the ONNX and AOTInductor paths.

The fused ops are ``torch.library`` custom ops, one per backend (``fastpose::<op>_<backend>``).
Exports always run under ``fastpose.use_backend("reference")``, so the exported graph holds only
the reference backend's ops (``fastpose::<op>_reference``), whatever backend the machine would
pick at run time. Each engine then lowers exactly those ops, through one table each:

* ONNX: :data:`fastpose.engine._onnx_ops.TRANSLATIONS`, onnxscript functions emitting standard
  ONNX operators (Softmax, ReduceSum, MatMul, ...);
* AOTInductor: :func:`fastpose.engine.aoti.decomposition_table`, the reference math
  (``fastpose.reference``, plain aten), which Inductor then fuses and compiles.

Any other ``fastpose::`` op left in the graph (a model that names ``backend=`` itself) is an
error that says so.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from ._common import BATCH
from ._models import Deployable

__all__ = ["REFERENCE_OPS", "export_program", "fastpose_ops_in", "metadata_dims"]

# The reference backend's forward custom ops an export can contain: the union of the ops'
# declared ``exports`` (fastpose/ops/_spec.py), in declaration order. Read on first use, so
# importing the engine does not import fastpose.ops.
@functools.cache
def _reference_ops() -> tuple[str, ...]:
    from ..ops._spec import SPECS

    return tuple(dict.fromkeys(name for s in SPECS.values() for name in s.exports))


class _ReferenceOps(Sequence):
    """A read-only sequence of :func:`_reference_ops` (the names, e.g. ``"soft_argmax_3d_reference"``)."""

    def __getitem__(self, i):
        return _reference_ops()[i]

    def __len__(self) -> int:
        return len(_reference_ops())

    def __repr__(self) -> str:
        return repr(_reference_ops())


REFERENCE_OPS: Sequence[str] = _ReferenceOps()


def reference_overload(name: str) -> torch._ops.OpOverload:
    """``torch.ops.fastpose.<name>.default``, with a clear error when fastpose.ops lacks it."""
    import fastpose.ops  # noqa: F401  (registers the ops)

    try:
        return getattr(torch.ops.fastpose, name).default
    except (AttributeError, RuntimeError) as exc:
        raise RuntimeError(
            f"custom op fastpose::{name} is not registered (fastpose.ops changed?); the engine lowering "
            f"tables expect the reference ops {_reference_ops()}"
        ) from exc


def fastpose_ops_in(gm: torch.fx.GraphModule) -> set[str]:
    """Names (without namespace) of the ``fastpose::`` ops called in a graph."""
    names = set()
    for node in gm.graph.nodes:
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            if node.target.namespace == "fastpose":
                names.add(node.target._opname)
    return names


def export_program(dep: Deployable, inputs: Sequence[Tensor], dynamic_batch: bool = True,
                   max_batch: int = 1024) -> torch.export.ExportedProgram:
    """torch.export ``dep.module`` on ``inputs`` under the reference backend.

    With ``dynamic_batch`` dimension 0 of every input is one symbolic size ``batch`` in
    [1, max_batch] (export with an example batch >= 2: torch.export specialises sizes 0 and 1).
    The deployable's other dynamic dimensions (``dep.input_axes``, e.g. ``frames`` of the
    full-video SPGNet) are always symbolic, in ``dep.dims[name]``'s [min, max]; their example
    sizes must be >= 2 as well.
    """
    import fastpose

    inputs = tuple(inputs)
    axes = list(dep.input_axes) or [{} for _ in inputs]
    if len(axes) != len(inputs):
        raise ValueError(f"export_program: {dep.name} declares dynamic axes for {len(axes)} inputs, "
                         f"received {len(inputs)} inputs")
    named = {name for a in axes for d, name in a.items() if d != 0}
    if dynamic_batch or named:
        if dynamic_batch and any(t.shape[0] < 2 for t in inputs):
            raise ValueError("export_program: export a dynamic batch with an example batch >= 2 "
                             f"(sizes 0/1 are specialised); received shapes {[tuple(t.shape) for t in inputs]}")
        dim_objs = {name: torch.export.Dim(name, min=int(dep.dims[name]["min"]), max=int(dep.dims[name]["max"]))
                    for name in named}
        if dynamic_batch:
            dim_objs[BATCH] = torch.export.Dim(BATCH, min=1, max=max_batch)
        per_input = []
        for t, a in zip(inputs, axes, strict=True):
            spec = {0: dim_objs[BATCH]} if dynamic_batch else {}
            for d, name in a.items():
                if d == 0:
                    continue
                if t.shape[d] < 2:
                    raise ValueError(f"export_program: the example size of dynamic dimension '{name}' must be "
                                     f">= 2 (sizes 0/1 are specialised), received {t.shape[d]}")
                spec[d] = dim_objs[name]
            per_input.append(spec)
        per_input = tuple(per_input)
        varargs = _varargs_name(dep.module)
        # forward(*tensors) takes its specs as {"tensors": (...)}; forward(a, b) as a plain tuple
        dynamic_shapes = {varargs: per_input} if varargs else per_input
    else:
        dynamic_shapes = None
    dep.module.eval()
    with fastpose.use_backend("reference"):
        ep = torch.export.export(dep.module, inputs, dynamic_shapes=dynamic_shapes)
    foreign = sorted(n for n in fastpose_ops_in(ep.graph_module) if n not in _reference_ops())
    if foreign:
        raise RuntimeError(
            f"export of {dep.name}: the graph calls fastpose ops {foreign} of a non-reference backend; the "
            "engines lower only the reference ops (the model must not pass backend= to fastpose.ops)"
        )
    return ep


def metadata_dims(dep: Deployable, dynamic_batch: bool, batch_range: tuple[int, int],
                  default_batch: int = 1) -> dict:
    """The ``EngineMetadata.dims`` record of an export of ``dep``: batch and every named dimension."""
    dims = {}
    if dynamic_batch:
        dims[BATCH] = {"min": int(batch_range[0]), "max": int(batch_range[1]),
                       "default": max(int(batch_range[0]), min(int(default_batch), int(batch_range[1])))}
    for name, info in dep.dims.items():
        dims[name] = {"min": int(info["min"]), "max": int(info["max"]), "default": int(info["default"])}
    return dims


def _varargs_name(module: torch.nn.Module) -> str | None:
    import inspect

    for p in inspect.signature(module.forward).parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return p.name
    return None
