"""Reference projection / reprojection loss against a per-point Python loop of VideoPose3D's
formula, analytic backward against autograd, gradcheck, pinhole property, zero-error gradient,
camera broadcasting (torch's rule), empty batch, non-contiguous inputs, low precision."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpose.reference import (
    project_to_2d,
    project_to_2d_backward,
    reprojection_loss,
    reprojection_loss_backward,
)

# A Human3.6M camera (54138969) normalised as in VideoPose3D (f' = 2f/w, c' = 2c/w - [1, h/w]).
H36M = [
    2.290099,
    2.2875624,
    0.02508307,
    0.0289107,
    -0.20709892,
    0.24777518,
    -0.00307515,
    -0.0009757,
    -0.00142447,
]


def _project_point(p, cam):
    """VideoPose3D's distortion model for one point, in plain Python floats."""
    fx, fy, cx, cy, k1, k2, k3, pa, pb = cam
    x, y, z = p
    u = min(max(x / z, -1.0), 1.0)
    v = min(max(y / z, -1.0), 1.0)
    r2 = u * u + v * v
    radial = 1.0 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    tan = pa * u + pb * v
    return fx * (u * (radial + tan) + pa * r2) + cx, fy * (v * (radial + tan) + pb * r2) + cy


def _naive_project(points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Loop over every point; the camera is indexed as torch broadcasting aligns it: its leading
    dims match the last ones of the point's leading index, a size-1 camera dim takes index 0."""
    out = torch.empty(points.shape[:-1] + (2,), dtype=torch.float64)
    lead = points.dim() - 2  # the points' leading dims (the joint dim excluded)
    clead = camera.shape[:-1]
    for idx in itertools.product(*[range(s) for s in points.shape[:-1]]):
        tail = idx[lead - len(clead):lead]  # the leading indices the camera's dims align with
        cam = camera[tuple(0 if c == 1 else i for c, i in zip(clead, tail, strict=True))].tolist()
        out[idx] = torch.tensor(_project_point(points[idx].tolist(), cam), dtype=torch.float64)
    return out


def _naive_loss(points, camera, kp, weights):
    proj = _naive_project(points, camera)
    total, count = 0.0, 0
    for idx in itertools.product(*[range(s) for s in points.shape[:-1]]):
        d = math.hypot(*(proj[idx] - kp[idx]).tolist())
        total += d * (1.0 if weights is None else float(weights[idx]))
        count += 1
    return total / max(count, 1)


def _points(shape, gen, clamp_some=True):
    """Points in front of the camera; with ``clamp_some`` about a third have |xy/z| > 1."""
    z = torch.rand(shape + (1,), generator=gen, dtype=torch.float64) * 3 + 1.5
    spread = 1.6 if clamp_some else 0.7
    uv = (torch.rand(shape + (2,), generator=gen, dtype=torch.float64) * 2 - 1) * spread
    if clamp_some:  # keep finite differences away from the clamp's kinks at |u| = 1
        uv = torch.where((uv.abs() - 1).abs() < 0.05, uv * 0.9, uv)
    return torch.cat([uv * z, z], dim=-1)


def _cameras(lead, gen):
    cam = torch.tensor(H36M, dtype=torch.float64).expand(lead + (9,)).clone()
    cam[..., 4:] += torch.randn(lead + (5,), generator=gen, dtype=torch.float64) * 0.05  # distortion
    cam[..., :4] += torch.randn(lead + (4,), generator=gen, dtype=torch.float64) * 0.05
    return cam


# camera leading dims for points (3, 4, J, 3): torch broadcasting (aligned from the right)
CAMERA_LEADS = [(), (3, 1), (4,), (1, 4), (3, 4)]


@pytest.mark.parametrize("clead", CAMERA_LEADS)
@pytest.mark.parametrize("j", [17, 18])
def test_matches_per_point_loop(clead, j):
    gen = torch.Generator().manual_seed(30 + len(clead) + j)
    points = _points((3, 4, j), gen)
    camera = _cameras(clead, gen)
    out = project_to_2d(points, camera)
    assert out.shape == (3, 4, j, 2) and out.dtype == torch.float64
    torch.testing.assert_close(out, _naive_project(points, camera), rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(
    f=st.tuples(st.floats(0.2, 5.0), st.floats(0.2, 5.0)),
    c=st.tuples(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0)),
    seed=st.integers(0, 2**31 - 1),
)
def test_zero_distortion_is_pinhole(f, c, seed):
    gen = torch.Generator().manual_seed(seed)
    points = _points((2, 5), gen, clamp_some=False)  # |xy/z| < 0.7: no clamping
    camera = torch.tensor([*f, *c, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    expected = torch.tensor(f, dtype=torch.float64) * points[..., :2] / points[..., 2:] + torch.tensor(
        c, dtype=torch.float64
    )
    torch.testing.assert_close(project_to_2d(points, camera), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("clead", CAMERA_LEADS)
def test_project_backward_matches_autograd(clead):
    gen = torch.Generator().manual_seed(31)
    points = _points((3, 4, 17), gen)
    camera = _cameras(clead, gen)
    g = torch.randn((3, 4, 17, 2), generator=gen, dtype=torch.float64)
    pr = points.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(project_to_2d(pr, camera), pr, g)
    got = project_to_2d_backward(g, points, camera)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # clamped coordinates pass no gradient through x (resp. y)
    clamped_x = (points[..., 0] / points[..., 2]).abs() > 1
    assert clamped_x.any() and (got[..., 0][clamped_x] == 0).all()


@pytest.mark.parametrize("clead", CAMERA_LEADS)
@pytest.mark.parametrize("weighted", [False, True])
def test_reprojection_loss_matches_loop_and_autograd(clead, weighted):
    gen = torch.Generator().manual_seed(32)
    points = _points((3, 4, 17), gen)
    camera = _cameras(clead, gen)
    kp = project_to_2d(points, camera) + 0.05 * torch.randn((3, 4, 17, 2), generator=gen, dtype=torch.float64)
    weights = torch.rand((3, 4, 17), generator=gen, dtype=torch.float64) + 0.5 if weighted else None
    loss = reprojection_loss(points, camera, kp, weights)
    assert loss.shape == ()
    torch.testing.assert_close(loss.item(), _naive_loss(points, camera, kp, weights), rtol=1e-12, atol=1e-14)
    pr = points.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(
        reprojection_loss(pr, camera, kp, weights), pr, torch.tensor(0.8, dtype=torch.float64)
    )
    got = reprojection_loss_backward(torch.tensor(0.8, dtype=torch.float64), points, camera, kp, weights)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-13)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(33)
    points = _points((2, 2, 3), gen).requires_grad_(True)
    camera = _cameras((2, 1), gen)
    kp = project_to_2d(points.detach(), camera) + 0.1 * torch.randn(
        (2, 2, 3, 2), generator=gen, dtype=torch.float64
    )
    weights = torch.rand((2, 2, 3), generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: project_to_2d(p, camera), (points,))
    assert torch.autograd.gradcheck(lambda p: reprojection_loss(p, camera, kp, weights), (points,))


def test_zero_error_gradient_is_zero_not_nan():
    gen = torch.Generator().manual_seed(34)
    points = _points((2, 3, 17), gen)
    camera = _cameras((2, 1), gen)
    kp = project_to_2d(points, camera)  # exact: every error is 0
    kp[0, 0, 0] += 0.1  # ... except one joint
    pr = points.clone().requires_grad_(True)
    reprojection_loss(pr, camera, kp).backward()
    got = reprojection_loss_backward(torch.tensor(1.0, dtype=torch.float64), points, camera, kp, None)
    for grad in (pr.grad, got):
        assert torch.isfinite(grad).all()
        assert (grad[0, 0, 1:] == 0).all() and (grad[1] == 0).all()
        assert grad[0, 0, 0].abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    gen = torch.Generator().manual_seed(35)
    points = _points((3, 4, 17), gen)
    camera = _cameras((3, 1), gen)
    kp = project_to_2d(points, camera) + 0.05 * torch.randn((3, 4, 17, 2), generator=gen, dtype=torch.float64)
    x = points.to(dtype)
    out = project_to_2d(x, camera)  # float64 camera: the computation follows the points (float32)
    assert out.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
    torch.testing.assert_close(out.double(), project_to_2d(x.double(), camera), rtol=tol, atol=tol)
    loss = reprojection_loss(x, camera.to(dtype), kp.to(dtype), None)
    assert loss.dtype == dtype and torch.isfinite(loss)
    grad = reprojection_loss_backward(torch.tensor(1.0, dtype=dtype), x, camera, kp, None)
    assert grad.dtype == dtype and torch.isfinite(grad).all()
    grad = project_to_2d_backward(torch.ones(3, 4, 17, 2, dtype=dtype), x, camera)
    assert grad.dtype == dtype and torch.isfinite(grad).all()


def test_empty_batch():
    points = torch.ones((0, 4, 17, 3), requires_grad=True)
    camera = torch.zeros((0, 1, 9))
    kp = torch.zeros((0, 4, 17, 2))
    assert project_to_2d(points, camera).shape == (0, 4, 17, 2)
    loss = reprojection_loss(points, camera, kp, torch.zeros(0, 4, 17))
    assert loss.shape == () and loss.item() == 0.0
    loss.backward()
    assert points.grad.shape == points.shape
    assert (
        reprojection_loss_backward(torch.tensor(1.0), points.detach(), camera, kp, None).shape == points.shape
    )
    assert project_to_2d_backward(torch.zeros(0, 4, 17, 2), points.detach(), camera).shape == points.shape


def test_non_contiguous():
    gen = torch.Generator().manual_seed(36)
    points = _points((3, 4, 17), gen)
    camera = _cameras((3, 1), gen)
    kp = project_to_2d(points, camera) + 0.05 * torch.randn((3, 4, 17, 2), generator=gen, dtype=torch.float64)
    p_nc = points.permute(3, 2, 1, 0).contiguous().permute(3, 2, 1, 0)
    c_nc = camera.permute(2, 1, 0).contiguous().permute(2, 1, 0)
    k_nc = kp.transpose(0, 2).contiguous().transpose(0, 2)
    assert not (p_nc.is_contiguous() or c_nc.is_contiguous() or k_nc.is_contiguous())
    torch.testing.assert_close(project_to_2d(p_nc, c_nc), project_to_2d(points, camera), rtol=0, atol=0)
    torch.testing.assert_close(reprojection_loss(p_nc, c_nc, k_nc), reprojection_loss(points, camera, kp))
    g = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(
        reprojection_loss_backward(g, p_nc, c_nc, k_nc, None),
        reprojection_loss_backward(g, points, camera, kp, None),
    )
