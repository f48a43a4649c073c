"""What the engines deploy: the two models (and each fused op) as tensor-in, tuple-out modules.

A :class:`Deployable` is an eval-mode ``nn.Module`` whose ``forward`` takes tensors positionally
and returns a tuple of tensors, plus the names of those tensors and a way to make example inputs.
Dimension 0 of every input and output is the (dynamic) batch.

* ``spgnet``: batched sliding-window lifting. Input ``keypoints_2d`` (B, R, J, 2) = B windows of
  R frames (R the receptive field, 243 by default here) in normalised screen coordinates; outputs
  ``pose`` (B, J, 3) root-relative metres of each window's centre frame and ``trajectory``
  (B, 1, 3) the root in the camera frame. Runs SPGNet's strided path (only the positions the
  centre frame needs; equal to the full model in eval mode). The ONNX export writes the same
  function as channels-last matrix products with the BatchNorms folded
  (:class:`_SPGNetWindowsGemm`, ``Deployable.onnx_rewrite``): ONNX Runtime runs it 1.5x faster
  than eager PyTorch, its Conv form 0.8x (numbers in :mod:`fastpose.engine.onnx`).
* ``spgnet`` with ``video=True`` (deployable name ``spgnet-video``): full-video inference. Input
  ``keypoints_2d`` (B, T, J, 2), T *dynamic* (any length >= 1); outputs ``pose`` (B, T, J, 3) and
  ``trajectory`` (B, T, 1, 3), one prediction per input frame. Inside the graph the sequence is
  edge-padded by the receptive-field margin (R - 1) / 2 on each side (the first / last frame
  repeated, as VideoPose3D pads at test time, ``np.pad(..., 'edge')``), then the *full* dilated
  model runs over all T + R - 1 frames (no strided windows): every intermediate activation is
  shared by neighbouring output frames, so a T-frame video costs about one window per frame
  in the first layer and less than that in the others, against R / 3 + ... per window of the
  strided path. Frame t's output equals the windows model on frames t - (R-1)/2 .. t + (R-1)/2
  of the padded sequence.
* ``volumetric``: input ``images`` (B, 3, S, S) floats in [0, 1]; outputs ``coords`` (B, J, 3)
  soft-argmax voxels and ``pose`` (B, J, 3) root-relative normalised coordinates. The volume
  itself (B x J x D x H x W) is not an output: it is consumed by the soft-argmax inside the engine.
* ``op:<name>``: one fused op of :mod:`fastpose.ops` with its float arguments fixed.

Precision: fp16 / bf16 deployables hold their weights in that dtype and take inputs in it. The
volumetric model's refinement MLP stays float32: the model hands it float32 coordinates
(``pose_from_coords`` calls ``coords.float()``), and the block is ~0.1 % of the FLOPs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ._common import BATCH, FRAMES, dtype_name, precision_dtype

__all__ = [
    "MODELS",
    "OP_SIGNATURES",
    "Deployable",
    "build_model",
    "deployable",
    "model_deployable",
    "op_deployable",
]

MODELS = ("spgnet", "volumetric")

# Deployment default for SPGNet: the paper's 243-frame receptive field (3^5). SPGNetConfig's own
# default is the 27-frame training model.
SPGNET_DEPLOY_DEFAULTS = {"filter_widths": (3, 3, 3, 3, 3)}

# Full-video export: frames accepted (min, max) and the length timed when none is given (~10 s
# at 30 fps per sequence, longer than the 243-frame receptive field). The maximum (~55 min at 30
# fps) only bounds the symbolic size the exporters see.
VIDEO_FRAMES = {"min": 1, "max": 100_000, "default": 300}


@dataclasses.dataclass
class Deployable:
    """An eval-mode module with positional tensor inputs and a tuple of tensor outputs."""

    name: str
    module: nn.Module
    input_names: list[str]
    output_names: list[str]
    make_inputs: Callable[[int, torch.dtype, torch.device, torch.Generator], tuple[Tensor, ...]]
    config: dict
    dtype: torch.dtype = torch.float32  # dtype of the floating inputs / weights
    # Dynamic dimensions besides the batch (dim 0 of everything): per input / output
    # {dim: name}, and per name {"min", "max", "default"}. Empty for the fixed-shape deployables.
    input_axes: list[dict[int, str]] = dataclasses.field(default_factory=list)
    output_axes: list[dict[int, str]] = dataclasses.field(default_factory=list)
    dims: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    # module -> the same function rewritten for ONNX (what export_onnx exports; None: the module
    # itself). Applied at export time, so it always sees the current weights.
    onnx_rewrite: Callable[[nn.Module], nn.Module] | None = None

    def example_inputs(self, batch: int = 2, device: str | torch.device = "cpu", seed: int = 0,
                       **sizes: int) -> tuple[Tensor, ...]:
        """Random inputs (never constant) of the deployable's dtype; batch ``batch``.

        ``sizes``: the other dynamic dimensions by name (``frames=T`` for ``spgnet-video``;
        default: each dimension's ``default``).
        """
        if batch < 1:
            raise ValueError(f"argument 'batch': expected >= 1, received {batch}")
        unknown = sorted(set(sizes) - set(self.dims))
        if unknown:
            raise ValueError(f"argument(s) {unknown}: {self.name} has no such dynamic dimension "
                             f"(it has {sorted(self.dims) or 'none besides the batch'})")
        full = {}
        for name, info in self.dims.items():
            v = int(sizes.get(name, info["default"]))
            if not info["min"] <= v <= info["max"]:
                raise ValueError(f"argument '{name}': expected {info['min']} <= {name} <= {info['max']}, received {v}")
            full[name] = v
        g = torch.Generator().manual_seed(seed)
        return tuple(t.to(device) for t in self.make_inputs(batch, self.dtype, torch.device("cpu"), g, **full))

    def to(self, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> Deployable:
        """A copy with weights (and future inputs) in ``dtype`` and/or on ``device``."""
        module = copy.deepcopy(self.module)
        if dtype is not None:
            module = module.to(dtype)
            fixup = getattr(module, "keep_float32", None)
            if fixup is not None:
                fixup()
        if device is not None:
            module = module.to(device)
        return dataclasses.replace(self, module=module.eval(), dtype=dtype or self.dtype)

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        with torch.inference_mode():
            return tuple(self.module(*inputs))


# ------------------------------------------------------------------------------------------- models
class _SPGNetWindows(nn.Module):
    """(B, R, J, 2) windows -> pose (B, J, 3)[, trajectory (B, 1, 3)] of each window's centre frame."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, keypoints_2d: Tensor) -> tuple[Tensor, ...]:
        out = self.model(keypoints_2d, strided=True)  # pose (B, 1, J, 3), trajectory (B, 1, 1, 3)
        pose = out.pose[:, 0]  # (B, J, 3)
        if out.trajectory is None:
            return (pose,)
        return pose, out.trajectory[:, 0]  # (B, J, 3), (B, 1, 3)


def _fold_bn(bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as y = x * scale + shift: scale = gamma / sqrt(var + eps),
    shift = beta - mean * scale (both (C,), float64 for the folding, cast by the caller)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


class _SPGNetWindowsGemm(nn.Module):
    """The windows model of :class:`_SPGNetWindows` as channels-last matrix products (eval only).

    Same function as SPGNet's strided path (``model(x, strided=True)`` in eval mode), rewritten
    for engines: activations are (B, L, C) (frames, then channels); a convolution whose stride
    equals its width w is a reshape (B, L, C) -> (B, L / w, w C) and ONE matrix product with the
    weight laid out (w C, C_out), ``W_mat[k C + c, o] = W[o, c, k]``; a 1 x 1 convolution is a
    product with W^T; each BatchNorm is folded into the preceding product (scale into the
    columns of the weight, shift as a bias), in float64 before casting. Every product has
    B x L / w rows -- the whole batch at once. ONNX Runtime's Conv kernel instead runs one
    im2col + GEMM per sample, whose N dimension is that sample's output length (27, 9, 3, 1
    positions in SPGNet-243's blocks): matrix-vector shaped products that re-read the 12 MB
    weight of a 1024-channel layer for every window (see :mod:`fastpose.engine.onnx`).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        c = model.config
        self.widths = tuple(c.filter_widths)
        self.num_joints = c.num_joints
        dtype = model.expand_conv.weight.dtype

        def conv_mat(weight: Tensor) -> Tensor:  # (C_out, C_in, w) -> (w C_in, C_out)
            co, ci, w = weight.shape
            return weight.double().permute(2, 1, 0).reshape(w * ci, co)

        def folded(weight: Tensor, bn: nn.BatchNorm1d) -> tuple[nn.Parameter, nn.Parameter]:
            scale, shift = _fold_bn(bn)
            w = conv_mat(weight) * scale[None, :]
            return (nn.Parameter(w.to(dtype), requires_grad=False),
                    nn.Parameter(shift.to(dtype), requires_grad=False))

        self.w0, self.b0 = folded(model.expand_conv.weight, model.expand_bn)
        ws, bs = [], []
        for i in range(len(self.widths) - 1):
            for k in (2 * i, 2 * i + 1):
                w, b = folded(model.layers_conv[k].weight, model.layers_bn[k])
                ws.append(w)
                bs.append(b)
        self.ws, self.bs = nn.ParameterList(ws), nn.ParameterList(bs)
        self.shrink_w = nn.Parameter(conv_mat(model.shrink.weight).to(dtype), requires_grad=False)
        self.shrink_b = nn.Parameter(model.shrink.bias.detach().clone(), requires_grad=False)
        self.trajectory = model.traj_shrink is not None
        if self.trajectory:
            self.traj_w = nn.Parameter(conv_mat(model.traj_shrink.weight).to(dtype), requires_grad=False)
            self.traj_b = nn.Parameter(model.traj_shrink.bias.detach().clone(), requires_grad=False)

    def forward(self, keypoints_2d: Tensor) -> tuple[Tensor, ...]:
        b, r, j, _ = keypoints_2d.shape
        fw = self.widths
        x = keypoints_2d.reshape(b, r // fw[0], fw[0] * j * 2)  # (B, R / w0, w0 * 2J)
        x = torch.relu(torch.matmul(x, self.w0) + self.b0)  # (B, L, C)
        for i, w in enumerate(fw[1:]):
            length, ch = x.shape[1], x.shape[2]
            res = x[:, w // 2 :: w]  # (B, L / w, C): the centre of every group of w positions
            h = torch.relu(torch.matmul(x.reshape(b, length // w, w * ch), self.ws[2 * i]) + self.bs[2 * i])
            x = res + torch.relu(torch.matmul(h, self.ws[2 * i + 1]) + self.bs[2 * i + 1])
        h = x[:, 0]  # (B, C): one position left
        pose = (torch.matmul(h, self.shrink_w) + self.shrink_b).reshape(b, self.num_joints, 3)
        if not self.trajectory:
            return (pose,)
        return pose, (torch.matmul(h, self.traj_w) + self.traj_b).reshape(b, 1, 3)


def _windows_as_gemm(module: nn.Module) -> nn.Module:
    """:class:`_SPGNetWindows` -> :class:`_SPGNetWindowsGemm` of the same model (ONNX export)."""
    return _SPGNetWindowsGemm(module.model).eval()


class _SPGNetVideo(nn.Module):
    """(B, T, J, 2) whole sequences -> pose (B, T, J, 3)[, trajectory (B, T, 1, 3)], every frame.

    Edge padding by p = (R - 1) / 2 frames on each side (frame 0 and frame T - 1 repeated),
    then the full dilated model: output length (T + 2p) - R + 1 = T.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.pad = model.total_pad

    def forward(self, keypoints_2d: Tensor) -> tuple[Tensor, ...]:
        x, p = keypoints_2d, self.pad
        if p:
            n, _, j, c = x.shape
            x = torch.cat([x[:, :1].expand(n, p, j, c), x, x[:, -1:].expand(n, p, j, c)], dim=1)
        out = self.model(x, strided=False)  # pose (B, T, J, 3), trajectory (B, T, 1, 3)
        if out.trajectory is None:
            return (out.pose,)
        return out.pose, out.trajectory


class _VolumetricImages(nn.Module):
    """images (B, 3, S, S) in [0, 1] -> coords (B, J, 3) voxels, pose (B, J, 3) normalised."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def keep_float32(self) -> None:
        # The model feeds the refinement block float32 (coords.float()): keep that block float32.
        if getattr(self.model, "refine", None) is not None:
            self.model.refine.float()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(images)
        return out["coords"], out["pose"]


def _load_checkpoint(name: str, path: str | Path) -> tuple[dict, dict]:
    """(architecture record without 'model', state dict) of a fastpose training checkpoint."""
    from ..train.common import load_checkpoint

    ckpt = load_checkpoint(path, expected_model=name, map_location="cpu")
    arch = {k: v for k, v in ckpt["arch"].items() if k != "model"}
    return arch, ckpt.get("ema_model") or ckpt["model"]  # the averaged weights when the run kept them


def build_model(name: str, checkpoint: str | Path | None = None, config: Mapping | None = None) -> nn.Module:
    """The model ``name`` ('spgnet' | 'volumetric') in eval mode.

    ``checkpoint``: a checkpoint written by ``fastpose train`` (its architecture record builds the
    model, its weights are loaded); without one, freshly initialised weights (for latency work).
    ``config``: overrides of the architecture (``SPGNetConfig`` / ``VolumetricConfig`` fields);
    not allowed together with a checkpoint, whose architecture is fixed.
    """
    if name not in MODELS:
        raise ValueError(f"argument 'model': expected one of {list(MODELS)}, received {name!r}")
    if checkpoint is not None and config:
        raise ValueError("argument 'config': a checkpoint fixes the architecture; do not pass both")
    state = None
    if checkpoint is not None:
        cfg, state = _load_checkpoint(name, checkpoint)
    elif name == "spgnet":
        cfg = {**SPGNET_DEPLOY_DEFAULTS, **dict(config or {})}
    else:
        cfg = dict(config or {})
    if name == "spgnet":
        from ..models.spgnet import SPGNet, SPGNetConfig

        base = SPGNetConfig()
        known = {f.name for f in dataclasses.fields(SPGNetConfig)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"argument 'config': unknown SPGNet fields {unknown}; known: {sorted(known)}")
        model: nn.Module = SPGNet(dataclasses.replace(base, **cfg))
    else:
        from ..models.volumetric import VolumetricConfig, VolumetricPoseNet

        if "backbone_layers" in cfg:
            cfg["backbone_layers"] = tuple(cfg["backbone_layers"])
        try:
            vcfg = VolumetricConfig.from_dict(cfg)
        except TypeError as exc:
            raise ValueError(f"argument 'config': {exc}") from exc
        model = VolumetricPoseNet(vcfg)
    if state is not None:
        model.load_state_dict(state)
    return model.eval()


def _config_dict(model: nn.Module) -> dict:
    cfg = model.config
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dataclasses.asdict(cfg)
    return json.loads(json.dumps(d, default=list))  # tuples -> lists, JSON-safe


def model_deployable(model: nn.Module, video: bool = False) -> Deployable:
    """Wrap an SPGNet or VolumetricPoseNet (eval mode is forced) as a :class:`Deployable`.

    ``video``: SPGNet only -- the full-video deployable ``spgnet-video`` (dynamic frame count,
    edge-padded inside; see the module docstring) instead of the sliding-window one.
    """
    from ..models.spgnet import SPGNet
    from ..models.volumetric import VolumetricPoseNet

    model = model.eval()
    dtype = next(model.parameters()).dtype
    if video and not isinstance(model, SPGNet):
        raise ValueError(f"argument 'video': full-video export exists for SPGNet only, received {type(model).__name__}")
    if isinstance(model, SPGNet):
        c = model.config
        r, j = c.receptive_field, c.num_joints
        outputs = ["pose", "trajectory"] if c.trajectory else ["pose"]
        if video:
            def make_video(batch, dt, device, g, frames):
                # a smooth random walk in normalised screen coordinates (a video, not noise)
                steps = torch.randn(batch, frames, j, 2, generator=g) * 0.02
                start = torch.rand(batch, 1, j, 2, generator=g) * 1.6 - 0.8
                return ((start + steps.cumsum(1)).to(device=device, dtype=dt),)

            axes = {0: BATCH, 1: FRAMES}
            cfg = {"model": "spgnet", **_config_dict(model), "layout": "video", "padding": "edge",
                   "pad_frames": model.total_pad}
            return Deployable("spgnet-video", _SPGNetVideo(model).eval(), ["keypoints_2d"], outputs, make_video,
                              cfg, dtype, input_axes=[axes], output_axes=[axes] * len(outputs),
                              dims={FRAMES: dict(VIDEO_FRAMES)})

        def make(batch, dt, device, g):
            # normalised screen coordinates: uniform in [-1, 1]
            return ((torch.rand(batch, r, j, 2, generator=g) * 2 - 1).to(device=device, dtype=dt),)

        return Deployable("spgnet", _SPGNetWindows(model).eval(), ["keypoints_2d"], outputs, make,
                          {"model": "spgnet", **_config_dict(model)}, dtype, onnx_rewrite=_windows_as_gemm)
    if isinstance(model, VolumetricPoseNet):
        s = model.config.input_size

        def make(batch, dt, device, g):
            return (torch.rand(batch, 3, s, s, generator=g).to(device=device, dtype=dt),)

        return Deployable("volumetric", _VolumetricImages(model).eval(), ["images"], ["coords", "pose"], make,
                          {"model": "volumetric", **_config_dict(model)}, dtype)
    raise TypeError(f"argument 'model': expected SPGNet or VolumetricPoseNet, received {type(model).__name__}")


def deployable(name: str, checkpoint: str | Path | None = None, config: Mapping | None = None,
               precision: str = "fp32", video: bool = False) -> Deployable:
    """:func:`build_model` + :func:`model_deployable`, in ``precision`` ('fp32' | 'fp16' | 'bf16').

    ``video=True`` (SPGNet only): the full-video deployable (dynamic frame count).
    """
    dtype = precision_dtype(precision)
    if video and name != "spgnet":
        raise ValueError(f"argument 'video': full-video export exists for 'spgnet' only, received model {name!r}")
    dep = model_deployable(build_model(name, checkpoint, config), video=video)
    return dep if dtype == torch.float32 else dep.to(dtype)


# ------------------------------------------------------------------------------------------- ops
# The tensor arguments of an op (fastpose/ops/_spec.py argument kinds): its main input, secondary
# tensors (targets, weights) and the camera. Float / string arguments (sigma, reduction) are fixed
# in the module.
_TENSOR_KINDS = ("main", "tensor", "camera")


def _signature(op: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(tensor input names in call order, output names) of ``op``, from its declaration."""
    from ..ops._spec import SPECS

    s = SPECS[op]
    return (tuple(a.name for a in s.args if a.kind in _TENSOR_KINDS), tuple(name for name, _shape in s.outputs))


def _op_signatures() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    from ..ops._spec import SPECS

    return {op: _signature(op) for op in SPECS}


class _LazySignatures(Mapping):
    """op -> (tensor input names, output names) for every declared op (read from ``SPECS`` on use,
    so importing the engine does not import ``fastpose.ops``)."""

    def __getitem__(self, op: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return _op_signatures()[op]

    def __iter__(self):
        return iter(_op_signatures())

    def __len__(self) -> int:
        return len(_op_signatures())


OP_SIGNATURES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = _LazySignatures()


class _OpModule(nn.Module):
    """One fused op as a module: forward(*tensors) -> tuple of the op's outputs.

    The op's positional arguments are rebuilt in its declared order (``SPECS[op].args``): tensor
    arguments from ``forward``'s inputs in order (an optional tensor left out -- the trailing
    ``weights`` of an unweighted deployable -- is passed as None), ``sigma`` / ``reduction`` from
    the fixed values. An op with one declared output returns a tensor, wrapped into a 1-tuple.
    """

    def __init__(self, op: str, weighted: bool, sigma: float, reduction: str):
        super().__init__()
        from ..ops._spec import SPECS

        self.op, self.weighted, self.sigma, self.reduction = op, weighted, sigma, reduction
        self._args = tuple((a.name, a.kind) for a in SPECS[op].args)
        self._n_out = len(SPECS[op].outputs)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        from .. import ops

        fixed = {"sigma": self.sigma, "reduction": self.reduction}
        rest = iter(tensors)
        args = [fixed[kind] if kind in fixed else next(rest, None) for _name, kind in self._args]
        out = getattr(ops, self.op)(*args)
        return (out,) if self._n_out == 1 else tuple(out)


def op_deployable(op: str, example: tuple[Tensor, ...], sigma: float = 2.0, reduction: str = "mean") -> Deployable:
    """A single fused op as a :class:`Deployable` whose inputs look like ``example``.

    ``example`` holds the op's tensor arguments in order (see :data:`OP_SIGNATURES`); leave out
    the trailing ``weights`` for an unweighted op. ``sigma`` / ``reduction`` are fixed.
    """
    from ..ops._spec import SPECS

    if op not in SPECS:
        raise ValueError(f"argument 'op': expected one of {sorted(SPECS)}, received {op!r}")
    names, outs = _signature(op)
    optional = [a.optional for a in SPECS[op].args if a.kind in _TENSOR_KINDS]
    # trailing optional tensors (weights) may be left out of the example
    required = max((i + 1 for i, opt in enumerate(optional) if not opt), default=0)
    weighted = "weights" in names and len(example) == len(names)
    if not required <= len(example) <= len(names):
        raise ValueError(f"op_deployable({op!r}): argument 'example': expected the tensors {names} (the first "
                         f"{required} required), received {len(example)}")
    names = names[: len(example)]
    shapes = [tuple(t.shape) for t in example]
    dtypes = [t.dtype for t in example]
    frozen = tuple(t.detach().cpu().clone() for t in example)

    def make(batch, dt, device, g):
        # the example's rows repeated cyclically up to ``batch`` (valid values for every op, e.g.
        # z > 0 for the projection); the main tensor takes the deployable's dtype.
        out = []
        for k, t in enumerate(frozen):
            rows = torch.arange(batch) % max(t.shape[0], 1)
            x = t[rows] if t.shape[0] else t.new_empty((batch, *t.shape[1:]))
            out.append(x.to(device=device, dtype=dt if k == 0 else t.dtype))
        return tuple(out)

    module = _OpModule(op, weighted, float(sigma), reduction).eval()
    cfg = {"op": op, "sigma": float(sigma), "reduction": reduction, "weighted": weighted,
           "example_shapes": [list(s) for s in shapes], "example_dtypes": [dtype_name(d) for d in dtypes]}
    return Deployable(f"op:{op}", module, list(names), list(outs), make, cfg, example[0].dtype)
