"""One training step of the volumetric image model with the fused head against the reference head.

A step is ``model(images, targets)`` (ResNet-50, deconvolutions, 2D heatmaps, the J x D x H x W
volume, soft-argmax + heatmap losses, refinement block), ``loss.backward()`` and an Adam step.
Providers of the head (the 2D heatmap MSE, the 3D soft-argmax and the volumetric heatmap MSE):

- ``reference``: the plain :mod:`fastpose.reference` math differentiated by autograd (what a user
  writes without fastpose: a softmax volume, its products with the coordinate grids, ...);
- every backend registered for ``soft_argmax_heatmap_mse_3d`` on the device (``cpu``, ``cuda``,
  ``triton``; the Triton interpreter only in the tiny pass), through ``fastpose.use_backend``.

Figures in ``extra_info``: ``images_per_second`` (batch / median step time), ``peak_memory_bytes``
of one step above what was live before it, the step's loss. Shapes: the paper model (256 x 256,
ResNet-50, 18 x 64^3 volume) at batch 32 on a GPU and batch 2 on the CPU; the tiny pass
(``--benchmark-disable``, CI) runs the tiny model once per provider and checks that every
provider's loss and gradients match the reference head's.

The records carry ``suite = "train_volumetric"`` (no ``op``), so ``benchmarks.report``'s per-op
tables skip them.
"""

from __future__ import annotations

import statistics
import time
import types
from unittest import mock

import torch

import fastpose
import fastpose.reference as R
from benchmarks._memory import peak_memory_bytes
from benchmarks._runner import bench_device as _device
from benchmarks._runner import bench_selection
from benchmarks._timing import CudaEventTarget
from fastpose.models import volumetric as vmod
from fastpose.models.volumetric import VolumetricConfig, VolumetricPoseNet
from fastpose.ops import _dispatch

_OP = "soft_argmax_heatmap_mse_3d"


def _quick(config) -> bool:
    """The tiny/smoke pass unless real benchmarks were asked for (benchmarks._runner.bench_selection)."""
    return bench_selection(config) == "tiny"


def _providers(device: str, quick: bool) -> list[str]:
    out = ["reference"]
    for be in _dispatch.available_backends(_OP):
        if be == "reference":
            continue
        impl = _dispatch.get_impl(_OP, be)
        if impl.devices is not None and device not in impl.devices:
            continue
        if be == "triton" and device == "cpu" and not quick:
            continue  # the interpreter is for correctness, never timed
        out.append(be)
    return out


def pytest_generate_tests(metafunc):
    if "train_provider" in metafunc.fixturenames:
        dev = _device(metafunc.config)
        metafunc.parametrize("train_provider", _providers(dev, _quick(metafunc.config)))


def _reference_ops() -> types.SimpleNamespace:
    """The model's ``ops`` namespace with the head computed by plain autograd on the reference math."""
    return types.SimpleNamespace(soft_argmax_3d=R.soft_argmax_3d, heatmap_mse_2d=R.heatmap_mse_2d,
                                 soft_argmax_heatmap_mse_3d=R.soft_argmax_heatmap_mse_3d)


def _head(provider: str):
    if provider == "reference":
        return mock.patch.object(vmod, "ops", _reference_ops())
    return fastpose.use_backend(provider)


def _setup(config: VolumetricConfig, batch: int, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    model = VolumetricPoseNet(config).to(device).train()
    g = torch.Generator().manual_seed(seed)
    s, j = config.input_size, config.num_joints
    images = torch.randint(0, 256, (batch, 3, s, s), dtype=torch.uint8, generator=g).to(device)
    p3 = torch.randn(batch, j, 3, generator=g) * 0.25 + torch.tensor([0.0, 0.0, 5.0])
    f = 2.5 * s
    uv = p3[..., :2] / p3[..., 2:3] * f + (s / 2 - 0.5)
    targets = {"joints_vox": model.voxel_targets(uv, p3).to(device),
               "weights": (torch.rand(batch, j, generator=g) > 0.1).float().to(device)}
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    return model, images, targets, opt


def _spread_predictions(model: VolumetricPoseNet) -> None:
    """Larger head weights so that images get different coordinates (as after some training).

    At initialisation all images give nearly the centre, and the refinement block's BatchNorm
    batch statistics then amplify the rounding differences between correct backends to O(1).
    """
    with torch.no_grad():
        torch.nn.init.normal_(model.lift[-1].weight, std=0.3)
        torch.nn.init.normal_(model.head_2d.weight, std=0.1)
        for m in model.deconv.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                torch.nn.init.normal_(m.weight, std=0.05)
        if model.refine is not None:
            torch.nn.init.normal_(model.refine.out.weight, std=0.05)


def _step_fn(model, images, targets, opt, provider):
    def step():
        with _head(provider):
            opt.zero_grad(set_to_none=True)
            out = model(images, targets)
            out["loss"].backward()
            opt.step()
        return out["loss"].detach()

    return step


def test_bench_train_step(benchmark, train_provider, request):
    quick = _quick(request.config)
    device = torch.device(_device(request.config))
    if quick:
        config, batch = VolumetricConfig.tiny(), 2
    else:
        config, batch = VolumetricConfig(), (32 if device.type == "cuda" else 2)
    model, images, targets, opt = _setup(config, batch, device)
    info = benchmark.extra_info
    info.update(suite="train_volumetric", model="volumetric", provider=train_provider, device=device.type,
                batch=batch, input_size=config.input_size, depth=config.depth, heatmap=config.heatmap_size,
                threads=torch.get_num_threads())
    benchmark.group = f"train_volumetric B{batch} {config.input_size}px {config.depth}^3"

    if quick:
        # Correctness: loss and gradients of one step equal the reference head's. One thread: the
        # tiny model gains nothing from two, and a shared CI machine stalls two-thread barriers.
        if device.type == "cpu":
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            request.addfinalizer(lambda: torch.set_num_threads(threads))
        def grads(provider):
            m, x, t, _ = _setup(config, 4, device)
            _spread_predictions(m)
            torch.manual_seed(2)  # same dropout masks
            with _head(provider):
                out = m(x, t)
                out["loss"].backward()
            return out["loss"].detach(), [p.grad.detach().clone() for p in m.parameters()]

        loss_ref, g_ref = grads("reference")
        loss, g = grads(train_provider)
        torch.testing.assert_close(loss, loss_ref, atol=2e-5, rtol=2e-4)
        scale = max(x.abs().max().item() for x in g_ref)
        for a, b in zip(g, g_ref, strict=True):
            torch.testing.assert_close(a, b, atol=2e-4 * scale, rtol=2e-3)
        result = benchmark.pedantic(_step_fn(model, images, targets, opt, train_provider), rounds=1)
        info["loss"] = float(result)
        return

    step = _step_fn(model, images, targets, opt, train_provider)
    step()  # warm-up: allocator, cuDNN / oneDNN algorithm choice, Triton autotuning
    t0 = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    once = time.perf_counter() - t0
    target = step
    timer = None
    if device.type == "cuda":
        timer = CudaEventTarget(step, device)
        target = timer
        rounds = int(min(50, max(5, 5.0 / max(once, 1e-6))))
    else:
        rounds = int(min(10, max(3, 20.0 / max(once, 1e-6))))
    result = benchmark.pedantic(target, rounds=rounds, iterations=1)
    if timer is not None:
        median_s = statistics.median(timer.times_ms) / 1e3
        info.update(time_source="cuda_events", times_ms=timer.times_ms)
    else:
        median_s = statistics.median(benchmark.stats.stats.data)
        info["time_source"] = "host_clock"
    info.update(median_ms=median_s * 1e3, images_per_second=batch / median_s, rounds=rounds, loss=float(result))

    class _Step:  # the shape peak_memory_bytes expects
        setup = None
        target = staticmethod(step)

    info["peak_memory_bytes"] = peak_memory_bytes(_Step, device)
    volume_bytes = batch * config.num_joints * config.depth * config.heatmap_size**2 * 4
    info["volume_bytes"] = volume_bytes
    assert info["peak_memory_bytes"] > volume_bytes  # the volume itself is live during the step
