"""Extreme inputs: huge / -inf logits, the float16 and bfloat16 ranges, degenerate Gaussians and
zero reprojection errors. Each result is compared with the float64 reference on the same values."""

from __future__ import annotations

import pytest
import torch

import fastpose.reference as R
from tests._tolerances import assert_close
from tests.triton._inputs import joints_for, points, volume

SHAPE3 = (1, 3, 5, 6, 7)


def _soft_argmax_vs_reference(K, x, what):
    nd = x.dim() - 2
    ref_c, ref_stats = R.soft_argmax.soft_argmax_forward(x.double(), nd)
    coords, stats = K.soft_argmax.soft_argmax_forward(x)
    assert torch.isfinite(coords).all(), f"{what}: non-finite coordinates"
    assert_close(coords, ref_c, x.dtype, f"{what} coords")
    g = torch.randn(coords.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    g = g.to(x.device)
    ref_grad = R.soft_argmax.soft_argmax_backward(g, x.double(), ref_stats)
    grad = K.soft_argmax.soft_argmax_backward(g.to(x.dtype), x, stats)
    assert torch.isfinite(grad).all(), f"{what}: non-finite gradient"
    assert_close(grad, ref_grad, x.dtype, f"{what} grad")
    return coords


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(torch.float32, 1e4), (torch.float32, 1e30), (torch.float16, 1e4), (torch.bfloat16, 1e30)],
    ids=["f32-1e4", "f32-1e30", "f16-1e4", "bf16-1e30"],
)
def test_soft_argmax_huge_logits(K, device, dtype, scale):
    """Logits far beyond exp's range: the max-shifted online softmax neither overflows nor
    produces 0/0; the result is the expectation over the (near) one-hot softmax."""
    gen = torch.Generator().manual_seed(1)
    x = volume(gen, SHAPE3, dtype=dtype, scale=scale, device=device)
    _soft_argmax_vs_reference(K, x, f"{dtype} x{scale:g}")


def test_soft_argmax_sharp_peak_lands_on_the_voxel(K, device):
    gen = torch.Generator().manual_seed(2)
    x = volume(gen, SHAPE3, scale=0.1, device=device)
    peaks = [(0, 0, 4, 5, 6), (0, 1, 0, 0, 0), (0, 2, 2, 3, 1)]  # (b, j, z, y, x)
    for b, j, z, y, xx in peaks:
        x[b, j, z, y, xx] = 200.0
    coords = _soft_argmax_vs_reference(K, x, "peak")
    for b, j, z, y, xx in peaks:
        torch.testing.assert_close(coords[b, j].cpu(), torch.tensor([xx, y, z], dtype=torch.float32),
                                   atol=1e-5, rtol=0)


def test_soft_argmax_minus_inf_logits(K, device):
    """-inf voxels have probability 0 (and gradient 0); a tile whose voxels are all -inf must not
    poison the running max (exp(-inf - -inf) would be NaN)."""
    gen = torch.Generator().manual_seed(3)
    x = volume(gen, SHAPE3, scale=2.0, device=device)
    x[0, 0, :3] = float("-inf")  # whole leading planes
    x[0, 1, :, :, ::2] = float("-inf")  # every other column
    x[0, 2] = float("-inf")
    x[0, 2, 4, 5, 6] = 0.5  # a single finite voxel, the last one
    coords, stats = K.soft_argmax.soft_argmax_forward(x, rows_per_split=4)  # some splits are all -inf
    ref_c, _ = R.soft_argmax.soft_argmax_forward(x.double(), 3)
    assert_close(coords, ref_c, torch.float32, "-inf coords (split)")
    assert torch.equal(coords[0, 2].cpu(), torch.tensor([6.0, 5.0, 4.0]))
    _soft_argmax_vs_reference(K, x, "-inf")
    grad = K.soft_argmax.soft_argmax_backward(torch.ones_like(coords), x, stats)
    assert (grad[0, 0, :3] == 0).all() and (grad[0, 1, :, :, ::2] == 0).all()


def test_fused_head_huge_logits(K, device):
    gen = torch.Generator().manual_seed(4)
    x = volume(gen, SHAPE3, scale=1e4, device=device)
    mu, w = joints_for(gen, SHAPE3, device=device)
    ref_c, ref_mse, ref_stats = R.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_forward(x.double(), mu, 1.5, w)
    coords, mse, stats = K.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_forward(x, mu.float(), 1.5, w.float())
    assert_close(coords, ref_c, torch.float32, "coords")
    torch.testing.assert_close(mse.double(), ref_mse, rtol=1e-5, atol=0)  # ~1e8: relative only
    gc = torch.randn(coords.shape, generator=gen, dtype=torch.float64).to(device)
    gm = torch.tensor(0.3, dtype=torch.float64, device=device)
    ref_grad = R.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_backward(
        gc, gm, x.double(), mu, 1.5, w, ref_stats)
    grad = K.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_backward(
        gc.float(), gm.float(), x, mu.float(), 1.5, w.float(), stats)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=2e-4, atol=1e-4)


@pytest.mark.parametrize("sigma", [1e-3, 1e3], ids=["sigma-tiny", "sigma-huge"])
def test_heatmap_mse_degenerate_sigma(K, device, sigma):
    """sigma -> 0: the target is 1 at a joint sitting exactly on a voxel centre, 0 elsewhere
    (exp underflows cleanly); sigma -> inf: the target is ~1 everywhere."""
    gen = torch.Generator().manual_seed(6)
    h = volume(gen, SHAPE3, scale=0.3, shift=0.5, device=device)
    mu, w = joints_for(gen, SHAPE3, device=device)
    mu = mu.round()  # on voxel centres
    ref = R.heatmap_mse.heatmap_mse_3d(h.double(), mu, sigma, w, "none")
    loss = K.heatmap_mse.heatmap_mse_forward(h, mu.float(), sigma, w.float(), "none")
    assert_close(loss, ref, torch.float32, f"loss sigma={sigma}")
    g = torch.rand(ref.shape, generator=gen, dtype=torch.float64).to(device)
    ref_grad = R.heatmap_mse.heatmap_mse_backward(g, h.double(), mu, sigma, w, "none")
    grad = K.heatmap_mse.heatmap_mse_backward(g.float(), h, mu.float(), sigma, w.float(), "none")
    assert_close(grad, ref_grad, torch.float32, f"grad sigma={sigma}")


def test_reprojection_zero_error_has_zero_gradient(K, device):
    """Keypoints equal to the projection (computed by the same kernel code, so e = 0 exactly):
    those points add 0 to the loss and get gradient 0, not NaN (d|e|/de is undefined at 0)."""
    gen = torch.Generator().manual_seed(7)
    pts, cam, kp, w = (t.float() for t in points(gen, lead=(2, 3), j=4, device=device))
    exact = K.projection.project_forward(pts, cam)
    kp[:, :, :2] = exact[:, :, :2]  # joints 0 and 1 of every pose: zero error
    loss = K.projection.reprojection_loss_forward(pts, cam, kp, w)
    ref = R.projection.reprojection_loss(pts.double(), cam.double(), kp.double(), w.double())
    assert_close(loss, ref, torch.float32, "loss")
    grad = K.projection.reprojection_loss_backward(torch.tensor(1.0, device=device), pts, cam, kp, w)
    assert torch.isfinite(grad).all()
    assert (grad[:, :, :2] == 0).all()
    ref_grad = R.projection.reprojection_loss_backward(torch.tensor(1.0, dtype=torch.float64), pts.double(),
                                                       cam.double(), kp.double(), w.double())
    assert_close(grad[:, :, 2:], ref_grad[:, :, 2:], torch.float32, "grad of the other joints")


def test_float64_accumulates_in_float64(K, device):
    """float64 inputs keep float64 precision end to end (1/(2 sigma^2) travels in a tensor)."""
    gen = torch.Generator().manual_seed(8)
    h = volume(gen, SHAPE3, dtype=torch.float64, scale=0.3, shift=0.2, device=device)
    mu, w = joints_for(gen, SHAPE3, device=device)
    sigma = 1.2345678901234
    ref = R.heatmap_mse.heatmap_mse_3d(h, mu, sigma, w, "none")
    loss = K.heatmap_mse.heatmap_mse_forward(h, mu, sigma, w, "none")
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-14)
    coords, stats = K.soft_argmax.soft_argmax_forward(h * 5)
    assert stats.dtype == torch.float64
    torch.testing.assert_close(coords, R.soft_argmax.soft_argmax_forward(h * 5, 3)[0], rtol=1e-12, atol=1e-12)
