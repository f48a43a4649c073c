"""Benchmark cases: the shapes of every op (taken from the papers), their inputs, cotangents.

Shapes:

- volumetric (Tsai & Luo): B = 32 on a GPU (the paper's batch), B = 8 on the CPU (the CPU seed
  shape of issue 3), J = 18, D = H = W = 64; the 2D heatmaps of the same model are J x 64 x 64;
- 2D heatmaps: B = 32 everywhere (the issue-14 2D targets are at B = 32, J = 18, 64 x 64);
- lifting (SPGNet / VideoPose3D): 1024 windows x 243 frames x 17 joints, with one camera per
  sequence (``camera="sequence"``: (N, 1, 9) where the ops broadcast the camera torch-style, else
  the prefix layout (N, 9)) and, at the paper shape, with one camera per frame
  (``camera="frame"``: (N, T, 9), VideoPose3D's (N*T, 9) with the points flattened);
- sweeps (mode forward+backward only): volume edge 16..96 (3D ops), batch (fused head), frames per
  window 1, 27, 81 (and the paper's 243: the receptive fields; T = 1 is the "1024 x 17 points" seed
  shape of issue 3).

Each op's inputs follow its public signature (``fastpose.ops.<op>(main, *args)``):
:func:`make_inputs` returns the main input and the other positional arguments in that order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

import fastpose.reference as R
from fastpose.ops._spec import SPECS
from fastpose.ops._spec import output_shapes as output_shape_of
from fastpose.reference._rows import acc_dtype

__all__ = [
    "CI_COMPILED",
    "EDGE",
    "IMAGE_BATCH",
    "IMAGE_OPS",
    "J_VOLUMETRIC",
    "LIFTING",
    "MODES",
    "PROJECTION_OPS",
    "SIGMA",
    "TINY",
    "VOLUMETRIC_OPS",
    "Case",
    "as_tuple",
    "cases_for",
    "cotangents",
    "make_inputs",
    "sequence_camera_broadcast",
    "output_shapes",
    "volumetric_batch",
]

MODES = ("forward", "backward", "forward+backward")

# The ops of each input family, from their declarations (fastpose/ops/_spec.py).
VOLUMETRIC_OPS = tuple(op for op, s in SPECS.items() if s.family == "volume")
IMAGE_OPS = tuple(op for op, s in SPECS.items() if s.family == "image")
PROJECTION_OPS = tuple(op for op, s in SPECS.items() if s.family == "points")

J_VOLUMETRIC = 18  # 17 Human3.6M joints + thorax (Tsai & Luo)
EDGE = 64  # D = H = W = 64 volumetric heatmaps, 64 x 64 2D heatmaps
LIFTING = {"N": 1024, "T": 243, "J": 17}  # SPGNet / VideoPose3D windows of 243 frames
SIGMA = 2.0  # Gaussian target width in voxels (the usual volumetric-heatmap choice)
IMAGE_BATCH = 32  # 2D heatmaps (B, 18, 64, 64) on every device: the issue-14 2D targets' shape

# Tiny shapes for the CI correctness pass (odd sizes, as in tests/ops/_cases.py): each benchmark
# runs once there, through the Triton interpreter too, so these must stay small.
TINY = {
    "volumetric": {"B": 2, "J": 3, "D": 5, "H": 6, "W": 7},
    "image": {"B": 2, "J": 3, "H": 9, "W": 11},
    "lifting": {"N": 3, "T": 4, "J": 17},
}

# The point the paper case already measures is not repeated (GPU 64^3 at B=32, CPU batch 8, T=243):
# the report puts the paper case into the sweep tables and plots.
SWEEP_EDGES = {"cuda": (16, 32, 48, 80, 96), "cpu": (16, 32, 64, 96)}
SWEEP_VOLUME_BATCH = {"cuda": 32, "cpu": 2}  # B of the volume sweep (CPU: bounded memory and time)
SWEEP_BATCHES = {"cuda": (1, 8, 64), "cpu": (1, 2, 4)}
SWEEP_FRAMES = (1, 27, 81)

# torch.compile of the reference on the CPU costs ~10-20 s per graph (inductor's C++ codegen):
# the CI pass compiles exactly these (op, mode) pairs, at the tiny shape.
CI_COMPILED = frozenset({("soft_argmax_heatmap_mse_3d", "forward+backward")})

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "float64": torch.float64}


def volumetric_batch(device: str) -> int:
    """The paper batch on a GPU (32), the CPU seed batch (8) elsewhere."""
    return 32 if device == "cuda" else 8



@dataclass(frozen=True)
class Case:
    """One input configuration of one op.

    ``kind``: ``tiny`` (CI), ``paper``, ``sweep-volume``, ``sweep-batch`` or ``sweep-frames``;
    ``dims``: the sizes (B, J, D, H, W / B, J, H, W / N, T, J) as ``((name, size), ...)``;
    ``camera``: projection ops only, ``"sequence"`` (one camera per window) or ``"frame"``.
    """

    op: str
    kind: str
    dims: tuple[tuple[str, int], ...]
    dtype: str = "float32"
    modes: tuple[str, ...] = MODES
    camera: str = ""

    @property
    def size(self) -> dict[str, int]:
        return dict(self.dims)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def shape_label(self) -> str:
        d = self.size
        if "D" in d:
            return f"B{d['B']}-J{d['J']}-{d['D']}x{d['H']}x{d['W']}"
        if "H" in d:
            return f"B{d['B']}-J{d['J']}-{d['H']}x{d['W']}"
        return f"{d['N']}x{d['T']}x{d['J']}"

    @property
    def id(self) -> str:
        # the per-sequence camera keeps the historical id (results stay comparable across runs)
        cam = "-camframe" if self.camera == "frame" else ""
        return f"{self.kind}-{self.shape_label}-{self.dtype}{cam}"

    @property
    def sweep_value(self) -> int | None:
        """The swept size: volume edge, batch or frames (None outside a sweep)."""
        d = self.size
        return {"sweep-volume": d.get("D"), "sweep-batch": d.get("B"),
                "sweep-frames": d.get("T")}.get(self.kind)


def _dims(**kw: int) -> tuple[tuple[str, int], ...]:
    return tuple(kw.items())


def cases_for(op: str, device: str, selection: str) -> list[Case]:
    """The cases of ``op`` on ``device`` for ``selection``: ``tiny`` (CI), ``paper`` or ``all``
    (paper shapes in every mode, then the sweeps in forward+backward)."""
    fb = ("forward+backward",)
    if selection == "tiny":
        if op in VOLUMETRIC_OPS:
            return [Case(op, "tiny", _dims(**TINY["volumetric"]))]
        if op in IMAGE_OPS:
            return [Case(op, "tiny", _dims(**TINY["image"]))]
        return [Case(op, "tiny", _dims(**TINY["lifting"]), camera=c) for c in ("sequence", "frame")]
    if selection not in ("paper", "all"):
        raise ValueError(f"cases_for: selection must be 'tiny', 'paper' or 'all', got {selection!r}")
    b = volumetric_batch(device)
    out: list[Case] = []
    if op in VOLUMETRIC_OPS:
        out.append(Case(op, "paper", _dims(B=b, J=J_VOLUMETRIC, D=EDGE, H=EDGE, W=EDGE)))
        if device == "cuda":  # mixed-precision training: bf16 logits, float32 accumulation
            out.append(Case(op, "paper", _dims(B=b, J=J_VOLUMETRIC, D=EDGE, H=EDGE, W=EDGE), "bfloat16"))
        sweeps = SPECS[op].bench_sweeps if selection == "all" else ()
        if "volume" in sweeps:
            bs = SWEEP_VOLUME_BATCH[_dev_key(device)]
            out += [Case(op, "sweep-volume", _dims(B=bs, J=J_VOLUMETRIC, D=e, H=e, W=e), modes=fb)
                    for e in SWEEP_EDGES[_dev_key(device)]]
        if "batch" in sweeps:
            out += [Case(op, "sweep-batch", _dims(B=n, J=J_VOLUMETRIC, D=EDGE, H=EDGE, W=EDGE), modes=fb)
                    for n in SWEEP_BATCHES[_dev_key(device)]]
    elif op in IMAGE_OPS:
        out.append(Case(op, "paper", _dims(B=IMAGE_BATCH, J=J_VOLUMETRIC, H=EDGE, W=EDGE)))
    elif op in PROJECTION_OPS:
        out += [Case(op, "paper", _dims(**LIFTING), camera=c) for c in ("sequence", "frame")]
        if selection == "all" and "frames" in SPECS[op].bench_sweeps:
            out += [Case(op, "sweep-frames", _dims(N=LIFTING["N"], T=t, J=LIFTING["J"]), modes=fb,
                         camera="sequence") for t in SWEEP_FRAMES]
    else:
        raise ValueError(f"cases_for: unknown op {op!r}")
    return out


def _dev_key(device: str) -> str:
    return "cuda" if device == "cuda" else "cpu"


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------
def _h36m_cameras_normalised() -> torch.Tensor:
    """(4, 9) normalised intrinsics of the four Human3.6M cameras (fastpose.camera's tables)."""
    from fastpose.camera import h36m_cameras

    return torch.stack([torch.from_numpy(c.intrinsics(normalized=True)) for c in h36m_cameras("S9")])


@functools.cache
def sequence_camera_broadcast() -> bool:
    """True when the projection ops (public op and reference math) take a camera (N, 1, 9) for
    points (N, T, J, 3), torch-style broadcasting; False: one camera per sequence is passed in the
    prefix layout (N, 9). Probed once on a tiny input."""
    from fastpose import ops

    pts = torch.tensor([0.1, -0.2, 3.0]).expand(2, 3, 4, 3).contiguous()  # (N=2, T=3, J=4, 3)
    cam = torch.tensor([1.1, 1.2, 0.01, 0.02, 0.0, 0.0, 0.0, 0.0, 0.0]).expand(2, 1, 9).contiguous()
    try:
        out = ops.project_to_2d(pts, cam, backend="reference")
        ref = R.project_to_2d(pts, cam)
    except (ValueError, RuntimeError, TypeError):
        return False
    return tuple(out.shape) == (2, 3, 4, 2) and tuple(ref.shape) == (2, 3, 4, 2)


def make_inputs(case: Case, device: str | torch.device, seed: int = 0) -> tuple[torch.Tensor, tuple]:
    """(main input, the op's other positional arguments) for ``case`` on ``device``.

    Main input in ``case.dtype``; secondary tensors (joints, weights, camera, keypoints) in float32
    (float64 for float64 inputs), as the public ops pass them to backends. Values are realistic:
    logits ~ N(0, 2^2), heatmaps in [0, 0.3) near Gaussian-target scale, joints anywhere inside the
    volume (sub-voxel), points 2-6 m in front of a real Human3.6M camera, some beyond the clamp.
    """
    gen = torch.Generator().manual_seed(seed)
    dt = case.torch_dtype
    sec = acc_dtype(dt)
    d = case.size
    op = case.op

    def to(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return t.to(device=device, dtype=dtype)

    if op not in SPECS:
        raise ValueError(f"make_inputs: unknown op {op!r}")
    spec = SPECS[op]
    names = [a.name for a in spec.args[1:]]  # the op's other positional arguments, in order
    if spec.family in ("volume", "image"):
        spatial = (d["D"], d["H"], d["W"]) if "D" in d else (d["H"], d["W"])
        shape = (d["B"], d["J"], *spatial)
        extent = torch.tensor([s - 1 for s in reversed(spatial)], dtype=torch.float64)  # (x, y[, z])
        joints = torch.rand(d["B"], d["J"], len(spatial), generator=gen, dtype=torch.float64) * extent
        weights = torch.rand(d["B"], d["J"], generator=gen, dtype=torch.float64) * 0.5 + 0.5
        if spec.main.name == "heatmaps":  # heatmaps near the Gaussian target's scale
            x = torch.rand(shape, generator=gen) * 0.3
        else:  # logits
            x = torch.randn(shape, generator=gen) * 2.0
        named = {"joints": to(joints, sec), "sigma": SIGMA, "weights": to(weights, sec), "reduction": "mean"}
        return to(x, dt), tuple(named[n] for n in names)
    n, t, j = d["N"], d["T"], d["J"]
    z = torch.rand(n, t, j, 1, generator=gen) * 4.0 + 2.0  # metres in front of the camera
    xy = torch.randn(n, t, j, 2, generator=gen) * 0.35 * z  # |xy/z| > 1 for ~0.5% of points
    points = torch.cat([xy, z], -1)
    cams = _h36m_cameras_normalised()
    camera = cams[torch.arange(n) % cams.shape[0]]  # (N, 9): one camera per window
    per_frame = camera[:, None].expand(n, t, 9).contiguous()  # (N, T, 9): valid in every layout
    cam_arg = camera  # what the op receives: (N, 9) prefix layout
    if case.camera == "frame":
        cam_arg = per_frame  # (N, T, 9) the window's camera repeated per frame
    elif case.camera == "sequence" and sequence_camera_broadcast():
        cam_arg = camera[:, None]  # (N, 1, 9) broadcast over the frames, torch-style
    named = {"camera": to(cam_arg, sec), "weights": None}  # SPGNet's 2D MPJPE: unweighted
    if "keypoints_2d" in names:
        kp = R.project_to_2d(points, per_frame) + torch.randn(n, t, j, 2, generator=gen) * 0.02
        named["keypoints_2d"] = to(kp, sec)
    return to(points, dt), tuple(named[n] for n in names)


def as_tuple(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def output_shapes(case: Case) -> list[tuple[int, ...]]:
    """Shapes of the op's outputs for ``case`` (from the op's declaration: coordinates, losses,
    projections)."""
    d = case.size
    sizes: dict[str, object] = dict(d)
    if "N" in d:
        sizes["*L"] = (d["N"], d["T"])
    if case.op not in SPECS:
        raise ValueError(f"output_shapes: unknown op {case.op!r}")
    return output_shape_of(case.op, sizes)


def cotangents(case: Case, device: torch.device, dtype: torch.dtype, seed: int = 1) -> list[torch.Tensor]:
    """Upstream gradients: random (drawn in float32, then cast, so every dtype sees the same
    values up to rounding) for coordinates / projections, 1 for scalar losses."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for shape in output_shapes(case):
        c = torch.ones(()) if shape == () else torch.randn(shape, generator=gen)
        out.append(c.to(device=device, dtype=dtype))
    return out

