"""soft_argmax_heatmap_mse_2d (the 2D fused head): the generic tests on every backend (from the op's
declaration), plus its own math against a naive, fully materialised formula."""

import pytest
import torch

from fastpose import ops
from tests._tolerances import assert_close
from tests.ops._cases import make_inputs, run
from tests.ops._generic import *  # noqa: F403

OPS = ["soft_argmax_heatmap_mse_2d"]


def _naive(logits: torch.Tensor, joints: torch.Tensor, sigma: float, weights: torch.Tensor | None):
    """The textbook computation, everything materialised (float64):

    p = softmax over the H*W pixels of each (b, j); coords = (sum_v p_v x_v, sum_v p_v y_v) with x the
    column index (along W) and y the row index (along H); t_v = exp(-((x_v - mu_x)^2 + (y_v - mu_y)^2)
    / (2 sigma^2)); mse = sum_bj w_bj sum_v (z_v - t_v)^2 / (B*J*H*W).
    """
    b, j, h, w = logits.shape
    z = logits.double()
    p = torch.softmax(z.reshape(b, j, h * w), dim=-1).reshape(b, j, h, w)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")  # (H, W) row and column indices
    coords = torch.stack([(p * xs).sum((-2, -1)), (p * ys).sum((-2, -1))], -1)  # (B, J, 2)
    mu = joints.double()
    d2 = (xs - mu[..., 0, None, None]) ** 2 + (ys - mu[..., 1, None, None]) ** 2  # (B, J, H, W)
    target = torch.exp(-d2 / (2 * sigma**2))
    sq = (z - target) ** 2
    if weights is not None:
        sq = sq * weights.double()[..., None, None]
    mse = sq.sum() / max(b * j * h * w, 1)
    return coords, mse


@pytest.mark.parametrize("j", [17, 18, 24])
@pytest.mark.parametrize("weighted", [True, False], ids=["weights", "no-weights"])
def test_matches_naive_formula(op, backend, j, weighted, fresh_seed):
    """Outputs and the gradient of both outputs against autograd through the naive formula."""
    gen = torch.Generator().manual_seed(fresh_seed)
    x, (mu, sigma, w) = make_inputs(op, gen, torch.float32, j=j)
    w = w if weighted else None
    exp_out, exp_grad = run(lambda t: _naive(t, mu, sigma, w), x.double(), ())
    out, grad = run(ops.soft_argmax_heatmap_mse_2d, x, (mu, sigma, w), backend=backend)
    assert out[0].shape == (x.shape[0], j, 2) and out[1].shape == ()
    assert_close(out[0], exp_out[0], torch.float32, f"{op}[{backend}] coords (seed {fresh_seed})")
    assert_close(out[1], exp_out[1], torch.float32, f"{op}[{backend}] mse (seed {fresh_seed})")
    assert_close(grad, exp_grad, torch.float32, f"{op}[{backend}] gradient (seed {fresh_seed})")


@pytest.mark.parametrize("used", ["coords", "mse"])
def test_gradient_of_one_output(op, backend, used, fresh_seed):
    """Only one output in the loss: the other's gradient is absent (None) and must count as zero."""
    gen = torch.Generator().manual_seed(fresh_seed)
    x, (mu, sigma, w) = make_inputs(op, gen, torch.float32, j=17)
    k = 0 if used == "coords" else 1

    def loss(t, fn, **kw):
        out = fn(t, mu, sigma, w, **kw)[k]
        return (out.double() * torch.linspace(-1, 2, out.numel(), dtype=torch.float64).reshape(out.shape)).sum()

    xe = x.double().requires_grad_(True)
    (exp,) = torch.autograd.grad(loss(xe, _naive), xe)
    xb = x.clone().requires_grad_(True)
    (got,) = torch.autograd.grad(loss(xb, ops.soft_argmax_heatmap_mse_2d, backend=backend), xb)
    assert_close(got, exp, torch.float32, f"{op}[{backend}] gradient of {used} alone")


def test_equals_the_two_2d_ops(op, backend, fresh_seed):
    """The 2D head is exactly (soft_argmax_2d, heatmap_mse_2d mean) on the same map."""
    gen = torch.Generator().manual_seed(fresh_seed)
    x, (mu, sigma, w) = make_inputs(op, gen, torch.float32, j=18)
    coords, mse = ops.soft_argmax_heatmap_mse_2d(x, mu, sigma, w, backend=backend)
    assert_close(coords, ops.soft_argmax_2d(x, backend="reference"), torch.float32, "coords")
    assert_close(mse, ops.heatmap_mse_2d(x, mu, sigma, w, backend="reference"), torch.float32, "mse")


def test_validation_names_the_2d_shapes():
    x = torch.zeros(2, 3, 5, 6)
    with pytest.raises(ValueError, match=r"soft_argmax_heatmap_mse_2d: logits must have 4 dimensions"):
        ops.soft_argmax_heatmap_mse_2d(x[None], torch.zeros(2, 3, 2), 2.0)
    with pytest.raises(ValueError, match=r"joints must have shape \(2, 3, 2\) to match logits \(2, 3, 5, 6\), "
                                         r"got \(2, 3, 3\)"):
        ops.soft_argmax_heatmap_mse_2d(x, torch.zeros(2, 3, 3), 2.0)
    with pytest.raises(ValueError, match=r"sigma must be a finite float > 0"):
        ops.soft_argmax_heatmap_mse_2d(x, torch.zeros(2, 3, 2), -1.0)


def test_onnx_lowering_through_the_3d_head(tmp_path):
    """Exported under the reference backend, the 2D head is the 3D reference op on a D = 1 view, which
    the one translation table lowers to standard ONNX; ONNX Runtime then matches PyTorch."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from fastpose.engine._onnx_ops import translation_table

    class Head(torch.nn.Module):
        def forward(self, logits, joints, weights):
            return ops.soft_argmax_heatmap_mse_2d(logits, joints, 1.7, weights, backend="reference")

    gen = torch.Generator().manual_seed(3)
    x, (mu, _sigma, w) = make_inputs("soft_argmax_heatmap_mse_2d", gen, torch.float32, j=5)
    mu, w = mu.float(), w.float()
    path = tmp_path / "head2d.onnx"
    program = torch.onnx.export(Head(), (x, mu, w), dynamo=True, custom_translation_table=translation_table(),
                                opset_version=18, verbose=False)
    program.save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = dict(zip([i.name for i in sess.get_inputs()], (x.numpy(), mu.numpy(), w.numpy()), strict=True))
    coords, mse = sess.run(None, feeds)
    exp_coords, exp_mse = _naive(x, mu, 1.7, w)
    assert_close(torch.from_numpy(coords), exp_coords, torch.float32, "ONNX coords")
    assert_close(torch.from_numpy(mse), exp_mse, torch.float32, "ONNX mse")
