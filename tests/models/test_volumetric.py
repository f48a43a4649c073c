"""VolumetricPoseNet: shapes, coordinate frames, losses, ablations, backends and memory."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import fastpose
from fastpose.models import volumetric as vmod
from fastpose.models.volumetric import (
    ABLATIONS,
    VolumetricConfig,
    VolumetricPoseNet,
    ablation_config,
    model_complexity,
    thorax_between_shoulders,
)
from tests._tolerances import assert_close

_OP = "soft_argmax_heatmap_mse_3d"


pytestmark = pytest.mark.usefixtures("one_thread")  # shared fixture, conftest.py


def _batch(config: VolumetricConfig, b: int = 2, seed: int = 0):
    """Random images and plausible labels: 3D joints ~4-6 m away, projected by a crop camera."""
    g = torch.Generator().manual_seed(seed)
    s = config.input_size
    images = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, generator=g)
    j = config.num_joints
    p3 = torch.randn(b, j, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 5.0])
    p3[:, :, 2] += torch.rand(b, 1, generator=g)  # root depth 5-6 m
    f = s * 2.5  # the pose spans about half of the crop
    camera = torch.tensor([f, f, s / 2 - 0.5, s / 2 - 0.5]).repeat(b, 1)
    uv = p3[..., :2] / p3[..., 2:3] * camera[:, None, :2] + camera[:, None, 2:]
    return images, uv, p3, camera


def test_tiny_forward_shapes_and_identity_refinement_at_start():
    torch.manual_seed(0)
    cfg = VolumetricConfig.tiny()
    assert cfg.heatmap_size == 16
    model = VolumetricPoseNet(cfg).eval()
    images, *_ = _batch(cfg, 3)
    with torch.no_grad():
        out = model(images)
    assert out["heatmaps_2d"].shape == (3, 18, 16, 16)
    assert out["volume"].shape == (3, 18, 16, 16, 16)
    assert out["coords"].shape == (3, 18, 3) and out["pose"].shape == (3, 18, 3)
    # Untrained: the refinement block is the identity on the root-relative normalised coords.
    p0 = model.root_relative(model.voxel_to_normalised(out["coords"]))
    torch.testing.assert_close(out["pose"], p0)
    assert torch.all(out["pose"][:, cfg.root_joint] == 0)
    # uint8 [0, 255] and float [0, 1] inputs are the same image.
    with torch.no_grad():
        again = model(images.float() / 255.0)
    torch.testing.assert_close(again["volume"], out["volume"])


def test_paper_sized_model_forward_parameters_and_flops():
    """The full 256 x 256 network (forward only, batch 1) and its measured complexity."""
    torch.manual_seed(0)
    model = VolumetricPoseNet().eval()
    x = torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8)
    with torch.no_grad():
        out = model(x)
    assert out["heatmaps_2d"].shape == (1, 18, 64, 64)
    assert out["volume"].shape == (1, 18, 64, 64, 64)
    assert out["pose"].shape == (1, 18, 3) and torch.isfinite(out["pose"]).all()
    c = model_complexity(model)
    assert c["params_m"] * 1e6 == sum(p.numel() for p in model.parameters())
    assert c["params_backbone_m"] == pytest.approx(23.508032)
    # The three 4x4 deconvolutions: 2048*256*16 + 2 * 256*256*16 weights + BN.
    assert c["params_deconv_m"] * 1e6 == 2048 * 256 * 16 + 2 * 256 * 256 * 16 + 3 * 2 * 256
    assert 35.0 < c["params_m"] < 36.0
    # ResNet-50 at 256 x 256 is 4.09 GMAC x (256/224)^2 = 5.4 GMAC = 10.7 GFLOP (2 per MAC).
    assert 10.4 < c["gflops_backbone"] < 10.9
    assert c["gflops"] == pytest.approx(
        c["gflops_backbone"] + c["gflops_deconv"] + c["gflops_head"] + c["gflops_refine"], rel=1e-6)
    assert c["gmacs"] == pytest.approx(c["gflops"] / 2)
    assert (c["paper_params_m"], c["paper_gflops"]) == (25.5, 7.0)


def test_voxel_targets_and_back_projection_round_trip():
    """Ground truth -> voxels -> normalised root-relative -> metres recovers the 3D pose."""
    cfg = VolumetricConfig.tiny()
    model = VolumetricPoseNet(cfg)
    _, uv, p3, camera = _batch(cfg, 4, seed=1)
    vox = model.voxel_targets(uv, p3)
    hm, s = cfg.heatmap_size, cfg.input_size
    torch.testing.assert_close(vox[..., 0], (uv[..., 0] + 0.5) * hm / s - 0.5)
    assert torch.allclose(vox[:, cfg.root_joint, 2], torch.full((4,), (cfg.depth - 1) / 2))
    z_rel = p3[..., 2] - p3[:, :1, 2]
    torch.testing.assert_close(vox[..., 2], z_rel * cfg.depth / cfg.depth_range + (cfg.depth - 1) / 2)
    pose = model.root_relative(model.voxel_to_normalised(vox))
    rec = model.to_camera(pose, vox[:, cfg.root_joint], p3[:, cfg.root_joint, 2], camera)
    torch.testing.assert_close(rec, p3 - p3[:, :1], atol=1e-5, rtol=1e-5)
    # A wrong depth of one joint by 0.1 normalised units moves it by 0.1 * R / 2 metres in Z.
    pose2 = pose.clone()
    pose2[:, 5, 2] += 0.1
    rec2 = model.to_camera(pose2, vox[:, 0], p3[:, 0, 2], camera)
    assert torch.allclose((rec2 - rec)[:, 5, 2], torch.full((4,), 0.1 * cfg.depth_range / 2), atol=1e-5)


def test_loss_is_the_sum_of_its_parts_and_ablations_switch_them():
    cfg = VolumetricConfig.tiny()
    images, uv, p3, _ = _batch(cfg, 2, seed=2)
    for name, flags in ABLATIONS.items():
        torch.manual_seed(0)
        model = VolumetricPoseNet(ablation_config(name, cfg)).train()
        assert (model.refine is not None) == flags["refinement"]
        targets = {"joints_vox": model.voxel_targets(uv, p3), "weights": torch.ones(2, 18)}
        out = model(images, targets)
        expected = out["loss_2d"] + out["loss_3d"] + 20.0 * out["loss_pose"]
        torch.testing.assert_close(out["loss"].detach(), expected)
        if flags["volumetric_loss"]:
            ref = fastpose.ops.heatmap_mse_3d(out["volume"].detach(), targets["joints_vox"], cfg.sigma_3d)
            torch.testing.assert_close(out["loss_3d"], ref)
        else:
            assert out["loss_3d"] == 0
        out["loss"].backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with pytest.raises(ValueError, match="ablation must be one of"):
        ablation_config("B")


def _partly_trained(cfg: VolumetricConfig) -> VolumetricPoseNet:
    """A model whose predictions differ between images, as after some training.

    At initialisation every image gives nearly the same (centre) coordinates, and the batch
    statistics of the refinement block's BatchNorm then divide differences of ~1e-5 by each other:
    any rounding difference between two correct backends is amplified to O(1). Larger head
    weights and a non-zero last refinement layer make the comparison well-conditioned.
    """
    torch.manual_seed(0)
    model = VolumetricPoseNet(cfg).train()
    with torch.no_grad():
        torch.nn.init.normal_(model.lift[-1].weight, std=0.3)
        torch.nn.init.normal_(model.head_2d.weight, std=0.1)
        for m in model.deconv.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                torch.nn.init.normal_(m.weight, std=0.05)
        torch.nn.init.normal_(model.refine.out.weight, std=0.05)
    return model


def _loss_and_grads(model: VolumetricPoseNet, images, targets):
    torch.manual_seed(123)  # same dropout masks
    model.zero_grad(set_to_none=True)
    out = model(images, targets)
    out["loss"].backward()
    return out["loss"].detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _fast_backends() -> list[str]:
    """Non-reference backends that serve both ops of the training head on CPU float32."""
    vol, hm = torch.empty(1, 1, 2, 2, 2), torch.empty(1, 1, 2, 2)
    names = [b for b in fastpose.ops.available_backends(_OP) if b != "reference"]
    return [b for b in names
            if not fastpose.ops.not_supported_reasons(_OP, b, vol, vol, torch.zeros(1, 1, 3), 1.0, None)
            and not fastpose.ops.not_supported_reasons("heatmap_mse_2d", b, hm, hm, torch.zeros(1, 1, 2), 1.0,
                                                       None, "mean")]


@pytest.mark.parametrize("backend", _fast_backends() or [pytest.param("none", marks=pytest.mark.skip(
    reason="no fused backend (cpu extension or Triton interpreter) is available here"))])
def test_fused_and_reference_backends_agree_for_the_whole_model(backend):
    cfg = VolumetricConfig.tiny(num_deconv=2)  # 8 x 8 heatmaps, 16 x 8 x 8 volume: quick
    model = _partly_trained(cfg)
    images, uv, p3, _ = _batch(cfg, 4, seed=3)
    weights = (torch.rand(4, 18, generator=torch.Generator().manual_seed(4)) > 0.2).float()
    targets = {"joints_vox": model.voxel_targets(uv, p3), "weights": weights}
    with fastpose.use_backend("reference"):
        loss_ref, grads_ref = _loss_and_grads(model, images, targets)
    with fastpose.use_backend(backend):
        loss, grads = _loss_and_grads(model, images, targets)
    assert_close(loss, loss_ref, what="loss")
    scale = max(g.abs().max().item() for g in grads_ref.values())
    for name, g in grads.items():
        torch.testing.assert_close(g, grads_ref[name], atol=2e-4 * scale, rtol=2e-3, msg=lambda m, n=name: f"{n}: {m}")


def _peak_bytes(fn) -> int:
    """Peak of (allocated - freed) bytes on the CPU while ``fn`` runs, from the profiler's
    memory events (the CPU allocator reports every allocation and free to it)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def _naive_fused(logits, joints, sigma, weights=None):
    """What the model must NOT do: materialise the (B, J, D, H, W) Gaussian target."""
    d, h, w = logits.shape[2:]
    zz, yy, xx = torch.meshgrid(torch.arange(d), torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack([xx, yy, zz], dim=-1).float()  # (D, H, W, 3)
    dist2 = ((grid - joints[:, :, None, None, None, :]) ** 2).sum(-1)  # (B, J, D, H, W)
    target = torch.exp(-dist2 / (2 * sigma**2))
    mse = ((logits - target) ** 2).mean()
    return fastpose.ops.soft_argmax_3d(logits), mse


def test_volumetric_heatmap_loss_never_materialises_a_target(monkeypatch):
    """Peak memory of a training forward with L_3DHM minus without it stays below one volume.

    The same check catches a target-materialising loss (the difference then exceeds a volume).
    """
    cfg = VolumetricConfig.tiny()
    b = 4
    images, uv, p3, _ = _batch(cfg, b, seed=5)
    volume_bytes = b * cfg.num_joints * cfg.depth * cfg.heatmap_size**2 * 4

    def peak(volumetric_loss: bool) -> int:
        torch.manual_seed(0)
        model = VolumetricPoseNet(cfg.replace(volumetric_loss=volumetric_loss)).train()
        targets = {"joints_vox": model.voxel_targets(uv, p3)}
        return _peak_bytes(lambda: model(images, targets))

    without = peak(False)
    extra = peak(True) - without
    assert extra < volume_bytes / 2, f"L_3DHM added {extra} bytes at peak; one volume is {volume_bytes}"

    naive_ops = types.SimpleNamespace(**{n: getattr(fastpose.ops, n) for n in fastpose.ops.__all__})
    naive_ops.soft_argmax_heatmap_mse_3d = _naive_fused
    monkeypatch.setattr(vmod, "ops", naive_ops)
    assert peak(True) - without >= volume_bytes  # the measurement sees a materialised target


@pytest.mark.parametrize("backend", _fast_backends() or [pytest.param("none", marks=pytest.mark.skip(
    reason="no fused backend (cpu extension or Triton interpreter) is available here"))])
def test_fused_head_forward_allocates_less_than_one_volume(backend):
    torch.manual_seed(0)
    vol = torch.randn(4, 18, 16, 16, 16, requires_grad=True)
    joints = torch.rand(4, 18, 3) * 15
    nbytes = vol.numel() * 4
    used = _peak_bytes(lambda: fastpose.ops.soft_argmax_heatmap_mse_3d(vol, joints, 1.0, backend=backend))
    assert used < nbytes / 2


def test_bad_inputs_name_the_argument():
    cfg = VolumetricConfig.tiny()
    model = VolumetricPoseNet(cfg)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 64, 64\), got \(2, 3, 32, 32\)"):
        model(torch.zeros(2, 3, 32, 32))
    images, uv, p3, _ = _batch(cfg, 2)
    with pytest.raises(ValueError, match=r"joints_vox'\] must be \(2, 18, 3\), got \(2, 17, 3\)"):
        model(images, {"joints_vox": torch.zeros(2, 17, 3)})
    with pytest.raises(ValueError, match=r"joints_2d must be \(B, 18, 2\)"):
        model.voxel_targets(uv[..., :1], p3)
    with pytest.raises(ValueError, match="input_size must be a multiple"):
        VolumetricConfig(input_size=100)
    with pytest.raises(ValueError, match="dropout"):
        VolumetricConfig(dropout=1.0)
    with pytest.raises(ValueError, match=r"unknown fields \['bogus'\]"):
        VolumetricConfig.from_dict({"bogus": 1})
    assert VolumetricConfig.from_dict(cfg.to_dict()) == cfg


def test_thorax_between_shoulders():
    p = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 17, 3)))
    q = thorax_between_shoulders(p)
    assert q.shape == (2, 18, 3)
    torch.testing.assert_close(q[:, 17], (p[:, 11] + p[:, 14]) / 2)
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, C\)"):
        thorax_between_shoulders(q)
