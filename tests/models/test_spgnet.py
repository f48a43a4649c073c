"""SPGNet: shapes, strided == full, VideoPose3D layer names, inference, loss."""

import pytest
import torch

from fastpose import ops
from fastpose.models import SPGNet, SPGNetConfig, SPGNetLossWeights, spgnet_loss
from fastpose.skeleton import H36M_SKELETON


def _trained_bn(model: SPGNet, R: int) -> SPGNet:
    """Give the BatchNorms non-trivial running statistics (a few train-mode passes)."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, R + 6, 17, 2) * 0.4 + 0.1)
    return model.eval()


@pytest.mark.parametrize("widths, R", [((3, 3, 3), 27), ((3, 3, 3, 3), 81), ((3, 3, 3, 3, 3), 243), ((1,), 1),
                                       ((5, 3), 15)])
def test_receptive_field_and_shapes(widths, R):
    cfg = SPGNetConfig(filter_widths=widths, channels=16)
    assert cfg.receptive_field == R
    m = SPGNet(cfg).eval()
    out = m(torch.randn(2, R + 3, 17, 2))
    assert out.pose.shape == (2, 4, 17, 3) and out.trajectory.shape == (2, 4, 1, 3)
    assert SPGNet(cfg, trajectory=False).eval()(torch.randn(1, R, 17, 2)).trajectory is None


@pytest.mark.parametrize("widths", [(3, 3, 3), (3, 3, 3, 3), (5, 3)])
def test_strided_model_equals_full_model(widths):
    torch.manual_seed(0)
    m = _trained_bn(SPGNet(filter_widths=widths, channels=48), SPGNetConfig(filter_widths=widths).receptive_field)
    R = m.receptive_field
    x = torch.randn(3, R + 4, 17, 2) * 0.5
    full, strided = m(x), m(x, strided=True)
    torch.testing.assert_close(strided.pose, full.pose, atol=1e-5, rtol=0)
    torch.testing.assert_close(strided.trajectory, full.trajectory, atol=1e-5, rtol=0)
    # and the output really depends on the whole receptive field (first and last frame)
    y = x.clone()
    y[:, 0] += 1.0
    assert not torch.allclose(m(y, strided=True).pose[:, 0], strided.pose[:, 0])


def test_videopose3d_layer_names_and_loading():
    m = SPGNet(filter_widths=(3, 3, 3), channels=32)
    names = {k for k in m.state_dict() if not k.startswith("traj_shrink.")}
    expected = {"expand_conv.weight", "shrink.weight", "shrink.bias"}
    expected |= {f"expand_bn.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    expected |= {f"layers_conv.{i}.weight" for i in range(4)}
    expected |= {f"layers_bn.{i}.{p}" for i in range(4)
                 for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert names == expected
    other = SPGNet(filter_widths=(3, 3, 3), channels=32)
    vp3d = {"model_pos": {f"module.{k}": v.clone() for k, v in other.state_dict().items()
                          if not k.startswith("traj_shrink.")}}  # as saved from nn.DataParallel
    m.load_videopose3d(vp3d)
    torch.testing.assert_close(m.expand_conv.weight, other.expand_conv.weight)
    with pytest.raises(ValueError, match=r"expand_conv.weight has shape \(32, 34, 3\) in the checkpoint, \(16, 34, 3\)"):
        SPGNet(filter_widths=(3, 3, 3), channels=16).load_videopose3d(vp3d)
    with pytest.raises(ValueError, match="missing keys"):
        SPGNet(filter_widths=(3, 3, 3, 3), channels=32).load_videopose3d(vp3d)


def test_predict_pads_the_sequence_and_averages_the_flip():
    torch.manual_seed(1)
    m = _trained_bn(SPGNet(filter_widths=(3, 3), channels=32), 9)
    kp = torch.randn(5, 17, 2) * 0.3  # shorter than the receptive field: edge padding fills in
    out = m.predict(kp)
    assert out.pose.shape == (5, 17, 3) and out.trajectory.shape == (5, 1, 3)
    both = m.predict(kp, flip_test=True)
    mirrored = m.predict(H36M_SKELETON.flip(kp))
    torch.testing.assert_close(both.pose, 0.5 * (out.pose + H36M_SKELETON.flip(mirrored.pose)))
    torch.testing.assert_close(both.trajectory[..., 0], 0.5 * (out.trajectory[..., 0] - mirrored.trajectory[..., 0]))


@pytest.mark.parametrize("flip_test", [False, True])
def test_predict_batch_of_clips_of_different_lengths(flip_test):
    """A list of clips of lengths T_i -> a list of outputs (T_i, 17, 3), each equal to predicting
    that clip alone and to the model run on the clip edge-padded by hand."""
    torch.manual_seed(2)
    m = _trained_bn(SPGNet(filter_widths=(3, 3, 3), channels=32), 27)
    lengths = (40, 5, 27, 1, 63)
    clips = [torch.randn(t, 17, 2) * 0.3 + 0.05 * i for i, t in enumerate(lengths)]
    clips[1] = clips[1].numpy()  # arrays and tensors alike
    batch = m.predict(clips, flip_test=flip_test)
    assert isinstance(batch, list) and len(batch) == len(lengths)
    for clip, out, t in zip(clips, batch, lengths, strict=True):
        alone = m.predict(clip, flip_test=flip_test)
        assert out.pose.shape == (t, 17, 3) and out.trajectory.shape == (t, 1, 3)
        torch.testing.assert_close(out.pose, alone.pose, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.trajectory, alone.trajectory, atol=1e-5, rtol=0)
    # the model on the hand-padded clip (13 = (27 - 1) / 2 frames repeated at each end)
    c = torch.as_tensor(clips[0])
    padded = torch.cat([c[:1].repeat(13, 1, 1), c, c[-1:].repeat(13, 1, 1)])[None]
    if not flip_test:
        torch.testing.assert_close(batch[0].pose, m(padded).pose[0], atol=1e-5, rtol=0)
    assert not torch.allclose(batch[0].pose[:5], batch[1].pose)  # outputs belong to their own clips
    assert m.predict([]) == []
    with pytest.raises(ValueError, match=r"keypoints_2d\[1\] must have shape \(T, 17, 2\) with T >= 1, "
                                         r"received \(4, 16, 2\)"):
        m.predict([clips[0], torch.zeros(4, 16, 2)])


def test_input_validation():
    m = SPGNet(filter_widths=(3, 3), channels=8)
    with pytest.raises(ValueError, match=r"keypoints_2d must have shape \(N, T, 17, 2\), got \(2, 9, 16, 2\)"):
        m(torch.randn(2, 9, 16, 2))
    with pytest.raises(ValueError, match="T=8 frames, fewer than the receptive field 9"):
        m(torch.randn(2, 8, 17, 2), strided=True)
    with pytest.raises(ValueError, match="filter_widths"):
        SPGNetConfig(filter_widths=(3, 2))
    with pytest.raises(ValueError, match="dropout"):
        SPGNetConfig(dropout=1.0)


def _perfect_batch(n=6, k=2):
    """Ground truth with exact 2D: rigid poses moving in front of a camera."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(n, 1, 17, 3, generator=g) * 0.3
    root = torch.tensor([0.1, -0.2, 5.0]) + torch.randn(n, k, 1, 3, generator=g) * 0.05
    gt = (base - base[:, :, :1]) + root  # (n, k, 17, 3) rigid: equal bones in both frames
    cam = torch.tensor([2.3, 2.3, 0.02, 0.03, -0.2, 0.24, -0.003, -0.001, -0.0014]).expand(n, 9).clone()
    kp = ops.project_to_2d(gt, cam[:, None].expand(n, k, 9))  # one camera per sample, all k frames
    return gt, kp, cam


def test_loss_terms_vanish_at_the_ground_truth_and_grow_away_from_it():
    gt, kp, cam = _perfect_batch()
    root = gt[:, :, :1]
    from fastpose.models.spgnet import SPGNetOutput

    perfect = SPGNetOutput(gt - root, root)
    total, terms = spgnet_loss(perfect, gt, kp, cam)
    assert float(total) < 1e-5 and all(float(v) < 1e-5 for v in terms.values())
    noisy = SPGNetOutput(gt - root + 0.01 * torch.randn_like(gt), root + torch.tensor([0.0, 0.0, 0.2]))
    total, terms = spgnet_loss(noisy, gt, kp, cam, SPGNetLossWeights(1, 2, 3, 4))
    assert all(float(v) > 0 for v in terms.values())
    torch.testing.assert_close(terms["trajectory"], torch.tensor(0.2 / 5.0), atol=2e-3, rtol=0)  # w = 1/z
    expected = terms["pose"] + 2 * terms["trajectory"] + 3 * terms["reprojection"] + 4 * terms["bone"]
    torch.testing.assert_close(total, expected)


def test_loss_reaches_every_parameter_even_with_zero_weights():
    """DDP needs a gradient (possibly zero) for every parameter: the graph must include all heads."""
    gt, kp, cam = _perfect_batch(k=1)
    m = SPGNet(filter_widths=(3,), channels=8)
    out = m(torch.randn(6, 3, 17, 2), strided=True)
    loss, terms = spgnet_loss(out, gt, kp, cam, SPGNetLossWeights(1.0, 0.0, 0.0, 1.0))
    loss.backward()
    assert float(terms["bone"]) == 0.0  # a single output frame has no consecutive pair
    assert all(p.grad is not None for p in m.parameters())


def test_bfloat16_autocast_training_step():
    gt, kp, cam = _perfect_batch(k=2)
    m = SPGNet(filter_widths=(3, 3), channels=16)
    x = torch.randn(6, 10, 17, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, strided=True)
    assert out.pose.dtype == torch.bfloat16
    loss, _ = spgnet_loss(out, gt, kp, cam)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(m.expand_conv.weight.grad).all()


# ---------------------------------------------------------------------------- training fast path
def _conv_path_reference(m: SPGNet, x: torch.Tensor):
    """The strided model written with nn.Conv1d / nn.BatchNorm1d on (B, C, L) windows (the eval-mode
    strided path of SPGNet, run here in train mode): pose (N, W, J, 3), trajectory (N, W, 1, 3)."""
    N, T, J, _ = x.shape
    R = m.receptive_field
    W = T - R + 1
    h = m._trunk_strided(x.reshape(N, T, J * 2).unfold(1, R, 1).reshape(N * W, J * 2, R))  # (N*W, C, 1)
    h = h.reshape(N, W, -1).transpose(1, 2)  # (N, C, W)
    return (m.shrink(h).transpose(1, 2).reshape(N, W, J, 3), m.traj_shrink(h).transpose(1, 2).reshape(N, W, 1, 3))


@pytest.mark.parametrize("widths", [(3, 3, 3), (5, 3), (1,)])
def test_strided_training_fast_path_equals_conv_path(widths):
    """Train mode, dropout 0: the channels-last GEMM trunk gives the conv path's outputs, gradients
    of every parameter and BatchNorm running statistics (mean, unbiased variance, batch count)."""
    import copy

    torch.manual_seed(4)
    fast = SPGNet(filter_widths=widths, channels=24, dropout=0.0).train()
    with torch.no_grad():  # non-trivial affine BatchNorm parameters
        for mod in fast.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
    ref = copy.deepcopy(fast)
    R = fast.receptive_field
    x = torch.randn(5, R + 2, 17, 2) * 0.5  # 3 windows per sample
    out = fast(x, strided=True)
    pose_ref, traj_ref = _conv_path_reference(ref, x)
    torch.testing.assert_close(out.pose, pose_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.trajectory, traj_ref, atol=1e-5, rtol=1e-5)
    g_pose, g_traj = torch.randn_like(pose_ref), torch.randn_like(traj_ref)
    torch.autograd.backward([out.pose, out.trajectory], [g_pose, g_traj])
    torch.autograd.backward([pose_ref, traj_ref], [g_pose, g_traj])
    for (name, p), q in zip(fast.named_parameters(), ref.parameters(), strict=True):
        scale = q.grad.abs().max().item()
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5 * max(scale, 1e-3), rtol=1e-4, msg=lambda s, n=name: f"{n}: {s}")
    for (name, b), c in zip(fast.named_buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(b, c, atol=1e-6, rtol=1e-5, msg=lambda s, n=name: f"{n}: {s}")
    assert int(fast.expand_bn.num_batches_tracked) == 1
    # the eval-mode strided path is still the conv path (export and evaluation rely on it)
    fast.load_state_dict(ref.state_dict())  # (the running statistics differ in float rounding)
    fast.eval()
    ref.eval()
    torch.testing.assert_close(fast(x, strided=True).pose, _conv_path_reference(ref, x)[0], atol=0, rtol=0)


@pytest.mark.parametrize("p", [0.25, 0.5, 0.3, 0.1])
def test_dropout_mask_keeps_each_unit_with_probability_one_minus_p(p):
    """The cheap mask (random bytes when 256 p is an integer, 32-bit words otherwise): every value is
    0 or exactly 1 / (1 - p), the kept fraction is 1 - p within 5 standard errors, neighbours are
    independent, and torch.manual_seed reproduces it."""
    from fastpose.models._temporal import _dropout_mask

    n = 1 << 20
    torch.manual_seed(5)
    mask = _dropout_mask((n // 256, 256), p, torch.device("cpu"))
    assert mask.dtype == torch.float32 and mask.shape == (n // 256, 256)
    keep = mask != 0
    assert torch.equal(mask[keep], torch.full_like(mask[keep], 1.0 / (1.0 - p)))
    q = 1.0 - p
    se = (p * q / n) ** 0.5
    frac = keep.double().mean().item()
    assert abs(frac - q) < 5 * se, f"kept fraction {frac:.5f}, expected {q} +- {5 * se:.5f}"
    flat = keep.reshape(-1)
    both = (flat[1:] & flat[:-1]).double().mean().item()  # P(two adjacent kept) = q^2 if independent
    assert abs(both - q * q) < 5 * (q * q * (1 - q * q) / n) ** 0.5 * 2, f"adjacent pairs kept {both:.5f}, expected {q * q}"
    per_column = keep.double().mean(dim=0)  # every channel (byte position in a word) gets 1 - p
    assert (per_column - q).abs().max().item() < 5 * (p * q / (n // 256)) ** 0.5
    torch.manual_seed(5)
    assert torch.equal(_dropout_mask((n // 256, 256), p, torch.device("cpu")), mask)
    assert not torch.equal(_dropout_mask((n // 256, 256), p, torch.device("cpu")), mask)


@pytest.mark.parametrize("inplace", [False, True])
def test_relu_dropout_scales_kept_units_and_their_gradient(inplace):
    """y = m z / (1 - p) with m = keep & (z > 0); dL/dz = m dL/dy / (1 - p)."""
    from fastpose.models._temporal import _relu_dropout

    p = 0.25
    torch.manual_seed(6)
    z = torch.randn(512, 64, requires_grad=True)
    z_in = z * 1.0 if inplace else z  # the in-place form needs a non-leaf input
    y = _relu_dropout(z_in, p, inplace=inplace)
    assert (y.data_ptr() == z_in.data_ptr()) == inplace
    g = torch.randn_like(y)
    y.backward(g)
    kept = y != 0
    assert not kept[z.detach() <= 0].any()  # ReLU
    pos = z.detach() > 0
    frac = kept[pos].double().mean().item()
    n = int(pos.sum())
    assert abs(frac - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5
    torch.testing.assert_close(y[kept], z.detach()[kept] / (1 - p), atol=0, rtol=1e-6)
    torch.testing.assert_close(z.grad, torch.where(kept, g / (1 - p), torch.zeros_like(g)), atol=0, rtol=1e-6)
    # p = 0 is a plain ReLU
    torch.testing.assert_close(_relu_dropout(z.detach(), 0.0), torch.relu(z.detach()), atol=0, rtol=0)


def test_training_forward_with_dropout_is_reproducible_and_random():
    m = SPGNet(filter_widths=(3, 3), channels=32).train()
    x = torch.randn(4, 10, 17, 2)
    torch.manual_seed(7)
    a = m(x, strided=True).pose
    torch.manual_seed(7)
    b = m(x, strided=True).pose
    c = m(x, strided=True).pose
    assert torch.equal(a, b) and not torch.allclose(a, c)
