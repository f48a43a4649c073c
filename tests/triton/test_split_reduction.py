"""The two-stage (split) reduction path and its determinism.

Volumes of the seed sizes take one program per (batch, joint) when B*J fills the GPU; smaller
batches split each volume's rows across programs (partial states, then a fixed-order merge). The
launchers take ``rows_per_split`` (volumes) / ``chunk`` (points) to force that path on tiny inputs.
"""

from __future__ import annotations

import pytest
import torch

import fastpose.reference as R
from tests._tolerances import assert_close
from tests.triton._inputs import joints_for, points, volume

# Each interpreted program costs milliseconds (more with many splits): keep B*J and S small.
SHAPES = {2: (1, 3, 9, 11), 3: (1, 2, 5, 6, 7)}
SIGMA = 1.3


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("rows_per_split", [1, 4, None])
def test_soft_argmax_split_matches_reference(K, device, ndim, rows_per_split):
    gen = torch.Generator().manual_seed(10 + ndim)
    x = volume(gen, SHAPES[ndim], scale=2.0, device=device)
    ref_coords, ref_stats = R.soft_argmax.soft_argmax_forward(x.double(), ndim)
    coords, stats = K.soft_argmax.soft_argmax_forward(x, rows_per_split=rows_per_split)
    assert_close(coords, ref_coords, torch.float32, f"coords rps={rows_per_split}")
    # the shared saved state [m, log s, c_x, c_y, c_z]
    assert stats.shape == ref_stats.shape
    assert_close(stats[..., 2 : 2 + ndim], ref_coords, torch.float32, "stats coords")
    assert_close(stats[..., 0], ref_stats[..., 0], torch.float32, "stats max")
    assert_close(stats[..., 1], ref_stats[..., 1], torch.float32, "stats log s")
    if ndim == 2:
        assert (stats[..., 4] == 0).all()
    g = torch.randn(coords.shape, generator=gen, dtype=torch.float64).to(device)
    ref_grad = R.soft_argmax.soft_argmax_backward(g, x.double(), ref_stats)
    grad = K.soft_argmax.soft_argmax_backward(g.float(), x, stats, rows_per_split=rows_per_split)
    assert_close(grad, ref_grad, torch.float32, f"grad rps={rows_per_split}")


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_heatmap_mse_split_matches_reference(K, device, ndim, reduction):
    gen = torch.Generator().manual_seed(20 + ndim)
    h = volume(gen, SHAPES[ndim], scale=0.3, shift=0.2, device=device)
    mu, w = joints_for(gen, SHAPES[ndim], device=device)
    ref_fn = R.heatmap_mse.heatmap_mse_3d if ndim == 3 else R.heatmap_mse.heatmap_mse_2d
    ref = ref_fn(h.double(), mu, SIGMA, w, reduction)
    g = torch.rand(ref.shape, generator=gen, dtype=torch.float64).to(device) + 0.5
    ref_grad = R.heatmap_mse.heatmap_mse_backward(g, h.double(), mu, SIGMA, w, reduction)
    for rps in (2, None):
        loss = K.heatmap_mse.heatmap_mse_forward(h, mu.float(), SIGMA, w.float(), reduction, rps)
        assert_close(loss, ref, torch.float32, f"loss rps={rps}")
        grad = K.heatmap_mse.heatmap_mse_backward(g.float(), h, mu.float(), SIGMA, w.float(), reduction,
                                                  rows_per_split=rps)
        assert_close(grad, ref_grad, torch.float32, f"grad rps={rps}")


@pytest.mark.parametrize("rows_per_split", [3, 7])
def test_fused_split_matches_reference(K, device, rows_per_split):
    gen = torch.Generator().manual_seed(30)
    shape = SHAPES[3]
    x = volume(gen, shape, scale=1.5, device=device)
    mu, w = joints_for(gen, shape, device=device)
    ref_c, ref_mse, ref_stats = R.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_forward(x.double(), mu, SIGMA, w)
    coords, mse, stats = K.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_forward(
        x, mu.float(), SIGMA, w.float(), rows_per_split=rows_per_split
    )
    assert_close(coords, ref_c, torch.float32, "coords")
    assert_close(mse, ref_mse, torch.float32, "mse")
    assert_close(stats[..., 0] + stats[..., 1], ref_stats[..., 0] + ref_stats[..., 1], torch.float32, "lse")
    gc = torch.randn(ref_c.shape, generator=gen, dtype=torch.float64).to(device)
    gm = torch.tensor(1.7, dtype=torch.float64, device=device)
    ref_grad = R.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_backward(
        gc, gm, x.double(), mu, SIGMA, w, ref_stats
    )
    grad = K.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_backward(
        gc.float(), gm.float(), x, mu.float(), SIGMA, w.float(), stats, rows_per_split=rows_per_split
    )
    assert_close(grad, ref_grad, torch.float32, "grad")


@pytest.mark.parametrize("chunk", [7, 64])
def test_reprojection_partials_match_reference(K, device, chunk):
    gen = torch.Generator().manual_seed(40)
    pts, cam, kp, w = points(gen, lead=(3, 7), j=5, device=device)  # 105 points: 15 / 2 partials
    ref = R.projection.reprojection_loss(pts, cam, kp, w)
    loss = K.projection.reprojection_loss_forward(pts.float(), cam.float(), kp.float(), w.float(), chunk=chunk)
    assert_close(loss, ref, torch.float32, f"loss chunk={chunk}")
    g = torch.tensor(0.8, dtype=torch.float64, device=device)
    ref_grad = R.projection.reprojection_loss_backward(g, pts, cam, kp, w)
    grad = K.projection.reprojection_loss_backward(g.float(), pts.float(), cam.float(), kp.float(), w.float(),
                                                  chunk=chunk)
    assert_close(grad, ref_grad, torch.float32, "grad")
    out = K.projection.project_forward(pts.float(), cam.float(), chunk=chunk)
    assert_close(out, R.projection.project_to_2d(pts, cam), torch.float32, "projection")


def test_split_results_are_bitwise_reproducible(K, device):
    """Same input, same split: identical bits (no atomics; partials merged in split order)."""
    gen = torch.Generator().manual_seed(50)
    shape = (1, 2, 4, 3, 5)
    x = volume(gen, shape, scale=3.0, device=device)
    mu, w = joints_for(gen, shape, device=device)
    for rps in (None, 2):
        a = K.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_forward(x, mu.float(), SIGMA, w.float(), rps)
        b = K.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_forward(x.clone(), mu.float(), SIGMA, w.float(), rps)
        for u, v in zip(a, b, strict=True):
            assert torch.equal(u, v)
        c1, s1 = K.soft_argmax.soft_argmax_forward(x, rows_per_split=rps)
        c2, s2 = K.soft_argmax.soft_argmax_forward(x.clone(), rows_per_split=rps)
        assert torch.equal(c1, c2) and torch.equal(s1, s2)
        l1 = K.heatmap_mse.heatmap_mse_forward(x, mu.float(), SIGMA, None, "sum", rps)
        l2 = K.heatmap_mse.heatmap_mse_forward(x.clone(), mu.float(), SIGMA, None, "sum", rps)
        assert torch.equal(l1, l2)


def test_plan_rows(K, monkeypatch):
    common = K._common
    # forced split sizes, capped so that S <= MAX_SPLITS
    assert common.plan_rows(6, 30, 7, torch.device("cpu"), 4) == (8, 4)
    splits, rps = common.plan_rows(1, 5000, 3, torch.device("cpu"), 1)
    assert splits <= common.MAX_SPLITS and splits * rps >= 5000
    assert common.plan_rows(6, 30, 7, torch.device("cpu")) == (1, 30)
    with pytest.raises(ValueError, match="rows_per_split"):
        common.plan_rows(6, 30, 7, torch.device("cpu"), 0)
    # the GPU heuristic (decided from the shape and the SM count only)
    monkeypatch.setattr(common, "INTERPRET", False)
    monkeypatch.setattr(common, "_sm_count", lambda index: 132)
    cuda = torch.device("cuda", 0)
    assert common.plan_rows(32 * 18, 64 * 64, 64, cuda) == (1, 4096)  # B*J fills the GPU
    splits, rps = common.plan_rows(18, 64 * 64, 64, cuda)  # one sample: split, >= 32k voxels each
    assert splits == 8 and rps * 64 >= 32768
    assert common.plan_rows(18, 9, 11, cuda) == (1, 9)  # tiny volumes are never split
