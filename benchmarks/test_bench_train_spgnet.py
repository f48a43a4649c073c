"""One SPGNet training step with the fused projection ops against plain reference autograd.

A step is the strided forward of a batch of windows (``model(keypoints, strided=True)``), the
SPGNet loss (MPJPE + weighted trajectory MPJPE + 2D re-projection through the distorted camera
+ bone-length consistency between the two output frames), ``loss.backward()`` and an Adam step.
Providers of the re-projection term:

- ``reference``: :func:`fastpose.reference.projection.reprojection_loss` differentiated by
  autograd (what a user writes without fastpose: VideoPose3D's ``project_to_2d`` + an MPJPE);
- every backend registered for ``reprojection_loss`` on the device (``cpu``, ``cuda``,
  ``triton``; the Triton interpreter only in the tiny pass) through ``fastpose.use_backend``.

Figures in ``extra_info``: ``frames_per_second`` (output frames / median step time),
``peak_memory_bytes`` of one step above what was live before it, and the loss. Shapes: the
paper's 243-frame model (filter widths 3,3,3,3,3, 1024 channels) with 1024 windows on a GPU and
64 on the CPU; the tiny pass (``--benchmark-disable``, CI) runs a small model once per provider
and checks that its loss and gradients equal the reference provider's.

The convolutions dominate a step (the projection is O(N J) against O(N C^2 R) for the trunk), so
the speed-up of the whole step is expected to be small; the benchmark measures how small.
Records carry ``suite = "train_spgnet"`` (no ``op``), so the per-op tables skip them.
"""

from __future__ import annotations

import statistics
import time
import types
from unittest import mock

import torch

import fastpose
from benchmarks._memory import peak_memory_bytes
from benchmarks._runner import bench_device as _device
from benchmarks._runner import bench_selection
from benchmarks._timing import CudaEventTarget
from fastpose.models import SPGNet, spgnet_loss
from fastpose.models import spgnet as smod
from fastpose.ops import _dispatch
from fastpose.reference import projection as ref_projection

_OP = "reprojection_loss"


def _quick(config) -> bool:
    """The tiny/smoke pass unless real benchmarks were asked for (benchmarks._runner.bench_selection)."""
    return bench_selection(config) == "tiny"


def _providers(device: str, quick: bool) -> list[str]:
    out = ["reference"]
    for be in _dispatch.available_backends(_OP):
        if be == "reference" or device not in _dispatch.get_impl(_OP, be).devices:
            continue
        if be == "triton" and device == "cpu" and not quick:
            continue  # the interpreter is for correctness, never timed
        out.append(be)
    return out


def pytest_generate_tests(metafunc):
    if "spgnet_provider" in metafunc.fixturenames:
        metafunc.parametrize("spgnet_provider", _providers(_device(metafunc.config), _quick(metafunc.config)))


def _projection(provider: str):
    """Context in which spgnet_loss's re-projection runs on ``provider``."""
    if provider == "reference":
        plain = types.SimpleNamespace(reprojection_loss=ref_projection.reprojection_loss)
        return mock.patch.object(smod, "ops", plain)
    return fastpose.use_backend(provider)


def _setup(widths, channels, batch, device, seed=0):
    torch.manual_seed(seed)
    model = SPGNet(filter_widths=widths, channels=channels).to(device).train()
    R = model.receptive_field
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(batch, 1, 17, 3, generator=g) * 0.25
    root = torch.tensor([0.0, 0.0, 5.0]) + torch.randn(batch, 2, 1, 3, generator=g) * 0.1
    gt = pose - pose[:, :, :1] + root  # (N, 2, J, 3): two output frames for the bone term
    cam = torch.tensor([2.29, 2.29, 0.025, 0.029, -0.207, 0.248, -0.003, -0.001, -0.0014]).expand(batch, 9)
    kp2 = ref_projection.project_to_2d(gt, cam[:, None].expand(batch, 2, 9))  # exact 2D of the two output frames
    kp = torch.cat([kp2[:, :1].expand(batch, R // 2, 17, 2), kp2, kp2[:, 1:].expand(batch, R // 2, 17, 2)], 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    to = lambda t: t.contiguous().to(device)
    return model, to(kp + 0.01 * torch.randn(kp.shape, generator=g)), to(gt), to(cam), opt


def _step_fn(model, kp, gt, cam, opt, provider):
    pad = model.receptive_field // 2

    def step():
        with _projection(provider):
            opt.zero_grad(set_to_none=True)
            out = model(kp, strided=True)
            loss, _ = spgnet_loss(out, gt, kp[:, pad : pad + 2], cam)
            loss.backward()
            opt.step()
        return loss.detach()

    return step


def test_bench_train_step(benchmark, spgnet_provider, request):
    quick = _quick(request.config)
    device = torch.device(_device(request.config))
    if quick:
        widths, channels, batch = (3, 3), 32, 16
    else:
        widths, channels, batch = (3, 3, 3, 3, 3), 1024, (1024 if device.type == "cuda" else 64)
    info = benchmark.extra_info
    info.update(suite="train_spgnet", model="spgnet", provider=spgnet_provider, device=device.type, batch=batch,
                filter_widths=list(widths), channels=channels, threads=torch.get_num_threads())
    benchmark.group = f"train_spgnet N{batch} R{SPGNet(filter_widths=widths, channels=1).receptive_field} C{channels}"

    if quick:
        if device.type == "cpu":  # one thread: a shared CI machine stalls two-thread barriers
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            request.addfinalizer(lambda: torch.set_num_threads(threads))

        def grads(provider):
            m, kp, gt, cam, _ = _setup(widths, channels, batch, device)
            torch.manual_seed(2)  # same dropout masks
            with _projection(provider):
                out = m(kp, strided=True)
                loss, terms = spgnet_loss(out, gt, kp[:, m.receptive_field // 2 :][:, :2], cam)
                loss.backward()
            return terms["reprojection"], [p.grad.detach().clone() for p in m.parameters()]

        l_ref, g_ref = grads("reference")
        l_got, g_got = grads(spgnet_provider)
        torch.testing.assert_close(l_got, l_ref, atol=1e-6, rtol=1e-5)
        scale = max(x.abs().max().item() for x in g_ref)
        for a, b in zip(g_got, g_ref, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5 * scale, rtol=1e-4)
        model, kp, gt, cam, opt = _setup(widths, channels, batch, device)
        info["loss"] = float(benchmark.pedantic(_step_fn(model, kp, gt, cam, opt, spgnet_provider), rounds=1))
        return

    model, kp, gt, cam, opt = _setup(widths, channels, batch, device)
    step = _step_fn(model, kp, gt, cam, opt, spgnet_provider)
    step()  # warm-up: allocator, cuDNN / oneDNN algorithm choice, Triton autotuning
    t0 = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    once = time.perf_counter() - t0
    target, timer = step, None
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
    info.update(median_ms=median_s * 1e3, frames_per_second=2 * batch / median_s, rounds=rounds,
                loss=float(result))

    class _Step:  # the shape peak_memory_bytes expects
        setup = None
        target = staticmethod(step)

    info["peak_memory_bytes"] = peak_memory_bytes(_Step, device)
    assert info["peak_memory_bytes"] > kp.numel() * 4  # at least the inputs' activations are live
