"""The cached CPU gradient buffer of the native volume ops (fastpose.ops.native._volume.grad_buffer):
reused only once the previous gradient is released, never while anything still references it."""

from __future__ import annotations

import pytest
import torch

from fastpose import _ext, ops

pytestmark = pytest.mark.skipif(_ext.get() is None, reason="fastpose._C is not built")

# 2 x 18 x 32^3 float32 = 4.7 MB: above the cache's 4 MiB threshold, small enough to be fast.
SHAPE = (2, 18, 32, 32, 32)


def _vol():
    from fastpose.ops.native import _volume

    return _volume


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=gen) * 2.0
    mu = torch.rand(SHAPE[0], SHAPE[1], 3, generator=gen) * 31
    return x, mu


def _grad(x, mu):
    xg = x.detach().requires_grad_(True)
    coords, mse = ops.soft_argmax_heatmap_mse_3d(xg, mu, 2.0, backend="cpu")
    (g,) = torch.autograd.grad((coords, mse), xg, (torch.ones_like(coords), torch.ones(())))
    return g


def test_released_gradient_buffer_is_reused():
    _vol().release_grad_cache()
    x, mu = _inputs()
    g1 = _grad(x, mu)
    p1 = g1.data_ptr()
    expected = g1.clone()
    del g1  # released: the next backward may write into the same storage
    g2 = _grad(x, mu)
    assert g2.data_ptr() == p1, "a released gradient's buffer should be reused"
    assert torch.equal(g2, expected), "the reused buffer must hold this step's gradient, fully written"


def test_held_gradient_is_never_overwritten():
    _vol().release_grad_cache()
    x, mu = _inputs(1)
    x2, _ = _inputs(2)
    g1 = _grad(x, mu)
    snapshot = g1.clone()
    view = g1[0]  # a view keeps the storage alive too
    del g1
    g2 = _grad(x2, mu)  # different logits: a different gradient
    assert g2.data_ptr() != view.data_ptr(), "a buffer still referenced by a view must not be reused"
    assert torch.equal(view, snapshot[0]), "the held gradient changed under a later backward"
    assert not torch.equal(g2, snapshot)


def test_leaf_grad_is_adopted_without_copy_and_kept():
    _vol().release_grad_cache()
    x, mu = _inputs(3)
    xr = x.detach().requires_grad_(True)
    coords, mse = ops.soft_argmax_heatmap_mse_3d(xr, mu, 2.0, backend="cpu")
    (coords.sum() + mse).backward()
    cached = _vol()._grad_storage[0]
    assert xr.grad.data_ptr() == cached.data_ptr(), "AccumulateGrad should adopt the buffer, not copy it"
    first = xr.grad.clone()
    x2, _ = _inputs(4)
    _grad(x2, mu)  # xr.grad still holds the cached buffer: this step must use another one
    assert torch.equal(xr.grad, first)


def test_cache_off_by_env_and_below_threshold(monkeypatch):
    vol = _vol()
    vol.release_grad_cache()
    monkeypatch.setenv("FASTPOSE_GRAD_CACHE", "0")
    x, mu = _inputs(5)
    _grad(x, mu)
    assert vol._grad_storage == [], "FASTPOSE_GRAD_CACHE=0 must not cache"
    monkeypatch.delenv("FASTPOSE_GRAD_CACHE")
    small = torch.randn(1, 2, 8, 8, 8)
    _grad(small, torch.rand(1, 2, 3) * 7)
    assert vol._grad_storage == [], "volumes below 4 MiB must not be cached"


def _reprojection_grad(seed: int):
    """A function computing the points' gradient of one re-projection loss (upstream gradient 0.7)
    on fixed random data: 100 x 243 x 17 = 413k points, 4.96 MB of float32 points (above the
    cache threshold), one camera per sequence."""
    gen = torch.Generator().manual_seed(seed)
    n, t, j = 100, 243, 17
    z = torch.rand(n, t, j, 1, generator=gen) * 4 + 2
    pts = torch.cat([torch.randn(n, t, j, 2, generator=gen) * 0.3 * z, z], -1)
    cam = torch.tensor([1.1, 1.1, 0.01, -0.02, -0.2, 0.2, -0.005, -0.001, 0.0005]).expand(n, 1, 9)
    kp = torch.randn(n, t, j, 2, generator=gen) * 0.3

    def grad():
        p = pts.detach().requires_grad_(True)
        (gp,) = torch.autograd.grad(ops.reprojection_loss(p, cam, kp, backend="cpu"), p, torch.tensor(0.7))
        return gp

    return grad


def test_reprojection_saved_and_points_gradients_through_the_cache(monkeypatch):
    """The re-projection loss holds one large buffer in a step: its saved gradient comes from the
    cache and, scaled in place by the backward, is the points' gradient; the gradients equal the
    uncached ones."""
    vol = _vol()
    vol.release_grad_cache()
    grad = _reprojection_grad(seed=6)

    monkeypatch.setenv("FASTPOSE_GRAD_CACHE", "0")
    expected = grad()
    monkeypatch.delenv("FASTPOSE_GRAD_CACHE")
    first = grad()
    ptr = first.data_ptr()
    assert torch.equal(first, expected)
    # the direct eager path scales the saved gradient in place (autograd frees the graph): it is the
    # points' gradient, so one buffer is cached
    assert [s.data_ptr() for s in vol._grad_storage] == [ptr], "the saved gradient should be the points' gradient"
    del first
    second = grad()
    assert torch.equal(second, expected)
    assert second.data_ptr() == ptr, "the released gradient's buffer should be reused"


def test_reprojection_custom_op_path_keeps_two_cached_buffers():
    """Through the registered custom op (compile/export's path) the backward's output may not alias
    its input, so the saved gradient and the points' gradient are two cached buffers, and the
    gradient equals the direct path's bit for bit."""
    from fastpose.ops.native import _glue

    vol = _vol()
    vol.release_grad_cache()
    grad = _reprojection_grad(seed=7)

    direct = grad().clone()
    vol.release_grad_cache()
    with _glue.custom_ops_only():
        via_op = grad()
    assert torch.equal(via_op, direct)
    assert len(vol._grad_storage) == 2, "the saved gradient and the points' gradient should both be cached"
    assert via_op.data_ptr() in {s.data_ptr() for s in vol._grad_storage}
