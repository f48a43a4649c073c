"""project_to_2d / reprojection_loss: every backend against the reference (generic tests) + specifics."""

import torch

import fastpose.reference as R
from fastpose import ops
from tests._tolerances import assert_close
from tests.ops._cases import H36M_CAMERA, make_inputs
from tests.ops._generic import *  # noqa: F403

OPS = ["project_to_2d", "reprojection_loss"]


def test_camera_broadcast_forms(op, backend, fresh_seed):
    """camera (9,), (N, 9) and (N, T, 9) for points (N, T, J, 3) agree with explicit expansion."""
    gen = torch.Generator().manual_seed(fresh_seed)
    pts, args = make_inputs(op, gen, torch.float64 if backend in ("reference", "cpu") else torch.float32, j=17)
    n, t = pts.shape[:2]
    rest = args[1:]
    full = H36M_CAMERA.expand(n, t, 9)
    expect = getattr(R, op)(pts.double(), full, *[a for a in rest])
    for cam in (H36M_CAMERA, H36M_CAMERA.expand(n, 9), full):
        got = getattr(ops, op)(pts, cam, *rest, backend=backend)
        assert_close(got, expect.to(got.dtype), got.dtype, f"{op}[{backend}] camera {tuple(cam.shape)}")
