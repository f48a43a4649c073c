"""SPGNet end-to-end training throughput: fastpose's step against a VideoPose3D-style step.

One training step = build a batch of B windows (R + k - 1 input frames -> k = 2 output frames each,
horizontal flips on a random half), the strided training forward of SPGNet (VideoPose3D's
``TemporalModelOptimized1f`` architecture; both providers start from identical weights), the four loss terms (pose MPJPE,
1/z-weighted trajectory MPJPE, 2D re-projection MPJPE through the distorted camera, bone-length
consistency between the two output frames), ``backward`` and an Adam (amsgrad) step.

Providers:

- ``videopose3d-style`` (the baseline): the model is ``benchmarks/_peers.py:
  TemporalModelOptimized1f`` (VideoPose3D's ``common/model.py`` pattern: ``nn.Conv1d`` with stride =
  filter width, ``nn.BatchNorm1d``, ``nn.ReLU``, ``nn.Dropout``, residual slicing), built from the
  fastpose model's state dict, so the baseline stays what users run today whatever fastpose's model
  does; batching as VideoPose3D's ``common/generators.py:
  ChunkedGenerator`` -- a Python loop over the batch that slices each window out of its numpy
  sequence (``np.pad(..., 'edge')`` at the sequence ends), mirrors flipped samples in place
  (x *= -1, left/right swap, camera[2] and camera[7] *= -1) into float64 buffers, then
  ``torch.from_numpy(...astype('float32'))`` and a copy to the device; losses written per term as
  VideoPose3D does (``common/loss.py: mpjpe, weighted_mpjpe``, ``common/camera.py:
  project_to_2d``; the bone term in the same plain-torch style). Written for this benchmark from
  those patterns (see ``benchmarks/_peers.py``).
- ``fastpose``: the sequences live on the device once (edge-padded, concatenated); a batch is one
  gather of window rows (``start + arange(L)``) plus :func:`fastpose.data.flip_batch`; the model is
  :class:`fastpose.models.SPGNet` with ``strided=True`` (its training fast path: channels-last GEMMs
  and a cheap dropout mask, ``fastpose/models/_temporal.py``); the loss is
  :func:`fastpose.models.spgnet_loss` (``fastpose.losses`` + the fused ``ops.reprojection_loss``).

Both use the same index schedule (which windows, which flips), so they see identical batches; the
CI pass (``--benchmark-disable``) checks exactly that -- batches, loss terms, every parameter
gradient and the BatchNorm running statistics equal -- on a tiny model with dropout 0 (the two
draw their dropout masks differently; ``tests/models/test_spgnet.py`` checks fastpose's mask
statistics), then runs one step of each.

Configurations: ``27f-256c`` (filter widths 3,3,3, 256 channels, batch 1024 on a GPU, 256 on the
CPU) and ``243f-1024c`` (3,3,3,3,3, 1024 channels, batch 1024; skipped on the CPU unless
``FASTPOSE_BENCH_LARGE=1``, then batch 64). ``extra_info``: ``frames_per_second`` (output frames per
second: B * k / median step), ``median_ms``, ``config``; the baseline rows carry ``baseline=True``
so the report's ratio column is fastpose / VideoPose3D-style. Records have ``suite =
"train_spgnet_e2e"`` (no ``op``), so the per-op tables skip them.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest
import torch

from benchmarks._peers import TemporalModelOptimized1f, mpjpe, project_to_2d
from benchmarks._runner import bench_device as _device
from benchmarks._runner import bench_selection
from benchmarks._timing import CudaEventTarget
from fastpose.camera import h36m_cameras
from fastpose.data import flip_batch, pad_sequence
from fastpose.models import SPGNet, spgnet_loss
from fastpose.skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, H36M_PARENTS

PROVIDERS = ("videopose3d-style", "fastpose")
FRAMES_OUT = 2  # k: the bone term compares two consecutive output frames (as fastpose's trainer)
J = 17
# name -> (filter widths, channels, batch on a GPU, batch on the CPU or None = skipped by default)
CONFIGS = {
    "27f-256c": ((3, 3, 3), 256, 1024, 256),
    "243f-1024c": ((3, 3, 3, 3, 3), 1024, 1024, None),
}
TINY = ((3, 3), 32, 16)  # widths, channels, batch of the CI pass
LARGE_CPU_BATCH = 64  # 243f-1024c on the CPU with FASTPOSE_BENCH_LARGE=1


def _quick(config) -> bool:
    return bench_selection(config) == "tiny"


def pytest_generate_tests(metafunc):
    if "e2e_case" in metafunc.fixturenames:
        names = ["tiny"] if _quick(metafunc.config) else list(CONFIGS)
        cases = [(n, p) for n in names for p in PROVIDERS]
        metafunc.parametrize("e2e_case", cases, ids=[f"{n}-{p}" for n, p in cases])


# ------------------------------------------------------------------------------------------------
# Data: smooth synthetic sequences (the content does not change the cost of a step)
# ------------------------------------------------------------------------------------------------
def _sequences(n_seq: int, frames: int, seed: int = 0) -> list[dict]:
    """``n_seq`` sequences of ``frames`` frames: positions_3d (T, 17, 3) camera frame, metres (a
    root ~5 m away that drifts, joints within ~0.5 m of it); keypoints_2d (T, 17, 2) their pinhole
    projection in normalised screen units plus noise; camera (9,) a real Human3.6M camera."""
    rng = np.random.default_rng(seed)
    cams = [c.intrinsics(normalized=True).astype(np.float32) for c in h36m_cameras("S1")]
    out = []
    for i in range(n_seq):
        root = np.array([0.0, 0.0, 5.0]) + np.cumsum(rng.normal(0, 0.003, (frames, 1, 3)), axis=0)
        body = rng.normal(0, 0.25, (1, J, 3)) + np.cumsum(rng.normal(0, 0.002, (frames, J, 3)), axis=0)
        body[:, 0] = 0.0
        pos = (root + body).astype(np.float32)  # (T, J, 3)
        cam = cams[i % len(cams)]
        kp = pos[..., :2] / pos[..., 2:] * cam[:2] + cam[2:4] + rng.normal(0, 0.002, (frames, J, 2))
        out.append({"keypoints_2d": kp.astype(np.float32), "positions_3d": pos, "camera": cam})
    return out


def _schedule(seqs: list[dict], batch: int, steps: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``steps`` batches of (sequence index (B,), first output frame (B,), flip (B,) bool): windows
    drawn without replacement per step from every (sequence, frame) with k frames left."""
    rng = np.random.default_rng(seed)
    seq_of = np.concatenate([np.full(s["positions_3d"].shape[0] - FRAMES_OUT + 1, i) for i, s in enumerate(seqs)])
    start = np.concatenate([np.arange(s["positions_3d"].shape[0] - FRAMES_OUT + 1) for s in seqs])
    out = []
    for _ in range(steps):
        pick = rng.choice(seq_of.shape[0], size=batch, replace=False)
        out.append((seq_of[pick], start[pick], rng.random(batch) < 0.5))
    return out


# ------------------------------------------------------------------------------------------------
# VideoPose3D-style step
# ------------------------------------------------------------------------------------------------
class _ChunkedBatcher:
    """VideoPose3D ``ChunkedGenerator``-style batching (numpy, a Python loop over the batch)."""

    def __init__(self, seqs: list[dict], pad: int, batch: int):
        self.seqs, self.pad = seqs, pad
        self.kps_left, self.kps_right = list(H36M_JOINTS_LEFT), list(H36M_JOINTS_RIGHT)
        # float64 buffers, as ChunkedGenerator's np.empty
        self.batch_2d = np.empty((batch, FRAMES_OUT + 2 * pad, J, 2))
        self.batch_3d = np.empty((batch, FRAMES_OUT, J, 3))
        self.batch_cam = np.empty((batch, 9))

    def __call__(self, seq_idx: np.ndarray, starts: np.ndarray, flips: np.ndarray):
        lr, rl = self.kps_left + self.kps_right, self.kps_right + self.kps_left
        for i, (s, start_3d, flip) in enumerate(zip(seq_idx, starts, flips, strict=True)):
            seq = self.seqs[s]
            kp = seq["keypoints_2d"]
            start_2d, end_2d = start_3d - self.pad, start_3d + FRAMES_OUT + self.pad
            low, high = max(start_2d, 0), min(end_2d, kp.shape[0])
            if low - start_2d or end_2d - high:
                self.batch_2d[i] = np.pad(kp[low:high], ((low - start_2d, end_2d - high), (0, 0), (0, 0)), "edge")
            else:
                self.batch_2d[i] = kp[low:high]
            self.batch_3d[i] = seq["positions_3d"][start_3d : start_3d + FRAMES_OUT]
            self.batch_cam[i] = seq["camera"]
            if flip:
                self.batch_2d[i, :, :, 0] *= -1
                self.batch_2d[i, :, lr] = self.batch_2d[i, :, rl]
                self.batch_3d[i, :, :, 0] *= -1
                self.batch_3d[i, :, lr] = self.batch_3d[i, :, rl]
                self.batch_cam[i, 2] *= -1
                self.batch_cam[i, 7] *= -1
        n = len(seq_idx)
        return (torch.from_numpy(self.batch_2d[:n].astype("float32")), torch.from_numpy(self.batch_3d[:n].astype("float32")),
                torch.from_numpy(self.batch_cam[:n].astype("float32")))


def _weighted_mpjpe(predicted, target, w):
    """VideoPose3D ``common/loss.py: weighted_mpjpe``: mean of w * |predicted - target|."""
    return torch.mean(w * torch.norm(predicted - target, dim=-1))


def _bone_loss(pose):
    """Bone-length consistency between consecutive frames, plain torch: pose (N, k, J, 3)."""
    child = [j for j, p in enumerate(H36M_PARENTS) if p >= 0]
    parent = [H36M_PARENTS[j] for j in child]
    length = torch.norm(pose[:, :, child] - pose[:, :, parent], dim=-1)  # (N, k, nb)
    return torch.mean(torch.abs(length[:, 1:] - length[:, :-1]))


def _videopose3d_loss(out, gt, kp_out, cam):
    """The four terms written per term, VideoPose3D style; returns (total, terms)."""
    pose, traj = out.pose, out.trajectory
    gt_root = gt[:, :, :1]
    l_pose = mpjpe(pose, gt - gt_root)
    l_traj = _weighted_mpjpe(traj, gt_root, 1 / gt_root[..., 2])
    l_2d = mpjpe(project_to_2d(pose + traj, cam), kp_out)
    l_bone = _bone_loss(pose)
    total = l_pose + l_traj + l_2d + l_bone
    return total, {"pose": l_pose, "trajectory": l_traj, "reprojection": l_2d, "bone": l_bone}


# ------------------------------------------------------------------------------------------------
# fastpose step: the data on the device, one gather per batch
# ------------------------------------------------------------------------------------------------
class _DeviceBatcher:
    """The sequences edge-padded and concatenated on the device; a batch is one gather."""

    def __init__(self, seqs: list[dict], pad: int, device: torch.device):
        kp = [pad_sequence(s["keypoints_2d"], pad) for s in seqs]  # (T + 2 pad, J, 2) each
        off2 = np.cumsum([0] + [k.shape[0] for k in kp[:-1]])
        off3 = np.cumsum([0] + [s["positions_3d"].shape[0] for s in seqs[:-1]])
        self.kp = torch.from_numpy(np.concatenate(kp)).to(device)
        self.pos = torch.from_numpy(np.concatenate([s["positions_3d"] for s in seqs])).to(device)
        self.cam = torch.from_numpy(np.stack([s["camera"] for s in seqs])).to(device)
        self.off2 = torch.from_numpy(off2).to(device)
        self.off3 = torch.from_numpy(off3).to(device)
        self.rows_in = torch.arange(FRAMES_OUT + 2 * pad, device=device)
        self.rows_out = torch.arange(FRAMES_OUT, device=device)

    def __call__(self, seq_idx: torch.Tensor, starts: torch.Tensor, flips: torch.Tensor):
        # window of output frame t starts at padded row t (= t - pad + pad)
        batch = {"keypoints_2d": self.kp[(self.off2[seq_idx] + starts)[:, None] + self.rows_in],  # (B, L, J, 2)
                 "positions_3d": self.pos[(self.off3[seq_idx] + starts)[:, None] + self.rows_out],  # (B, k, J, 3)
                 "camera": self.cam[seq_idx]}  # (B, 9)
        batch = flip_batch(batch, flips)
        return batch["keypoints_2d"], batch["positions_3d"], batch["camera"]


# ------------------------------------------------------------------------------------------------
def _model(provider: str, widths, channels, device, seed=0, dropout=0.25) -> torch.nn.Module:
    """The provider's model in training mode, from the same seeded SPGNet weights for both."""
    torch.manual_seed(seed)
    model = SPGNet(filter_widths=widths, channels=channels, dropout=dropout).to(device).train()
    return TemporalModelOptimized1f.from_spgnet(model) if provider == "videopose3d-style" else model


def _make_step(provider: str, model: torch.nn.Module, seqs, schedule, batch: int, device: torch.device):
    """A callable running the next step of ``schedule`` (cycling) with ``provider`` (``model`` from
    :func:`_model` for the same provider); returns the loss."""
    pad = model.receptive_field // 2
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, amsgrad=True)
    state = {"i": 0}
    if provider == "fastpose":
        batcher = _DeviceBatcher(seqs, pad, device)
        sched = [tuple(torch.from_numpy(np.asarray(a)).to(device) for a in s) for s in schedule]

        def step():
            s, t, f = sched[state["i"] % len(sched)]
            state["i"] += 1
            kp, gt, cam = batcher(s, t, f)
            loss, _ = spgnet_loss(model(kp, strided=True), gt, kp[:, pad : pad + FRAMES_OUT], cam)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()
    elif provider == "videopose3d-style":
        batcher = _ChunkedBatcher(seqs, pad, batch)

        def step():
            s, t, f = schedule[state["i"] % len(schedule)]
            state["i"] += 1
            kp, gt, cam = (x.to(device) for x in batcher(s, t, f))
            loss, _ = _videopose3d_loss(model(kp), gt, kp[:, pad : pad + FRAMES_OUT], cam)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()
    else:
        raise ValueError(f"_make_step: provider must be one of {PROVIDERS}, received {provider!r}")
    return step


def _check_equal(widths, channels, batch, device):
    """Both providers see the same batch and produce the same loss terms, gradients and BatchNorm
    running statistics (dropout 0: the two models draw their masks differently)."""
    seqs = _sequences(3, 40)
    s, t, f = _schedule(seqs, batch, 1)[0]
    f[:2] = (True, False)  # both flip states present
    pad = SPGNet(filter_widths=widths, channels=1).receptive_field // 2
    a = _ChunkedBatcher(seqs, pad, batch)(s, t, f)
    b = _DeviceBatcher(seqs, pad, device)(*(torch.from_numpy(np.asarray(x)).to(device) for x in (s, t, f)))
    for x, y, name in zip(a, b, ("keypoints_2d", "positions_3d", "camera"), strict=True):
        torch.testing.assert_close(x.to(device), y, atol=0, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
    results = []
    for provider, (kp, gt, cam) in (("videopose3d-style", a), ("fastpose", b)):
        model = _model(provider, widths, channels, device, dropout=0.0)
        kp, gt, cam = kp.to(device), gt.to(device), cam.to(device)
        out = model(kp) if provider == "videopose3d-style" else model(kp, strided=True)
        fn = _videopose3d_loss if provider == "videopose3d-style" else spgnet_loss
        loss, terms = fn(out, gt, kp[:, pad : pad + FRAMES_OUT], cam)
        loss.backward()
        results.append((loss.detach(), {k: v.detach() for k, v in terms.items()},
                        {n: p.grad.detach().clone() for n, p in model.named_parameters()},
                        {n: b.detach().clone() for n, b in model.named_buffers()}))
    (l_a, t_a, g_a, b_a), (l_b, t_b, g_b, b_b) = results
    torch.testing.assert_close(l_b, l_a, atol=1e-6, rtol=1e-5)
    for k in t_a:
        torch.testing.assert_close(t_b[k], t_a[k], atol=1e-6, rtol=1e-5, msg=lambda m, k=k: f"term {k}: {m}")
    assert set(g_b) == set(g_a) and set(b_b) == set(b_a), "the two models' parameter / buffer names differ"
    scale = max(g.abs().max().item() for g in g_a.values())
    for n in g_a:
        torch.testing.assert_close(g_b[n], g_a[n], atol=1e-5 * scale, rtol=1e-4, msg=lambda m, n=n: f"grad {n}: {m}")
    for n in b_a:  # running mean / unbiased running variance after one step, num_batches_tracked
        torch.testing.assert_close(b_b[n], b_a[n], atol=1e-6, rtol=1e-5, msg=lambda m, n=n: f"buffer {n}: {m}")


def test_bench_train_e2e(benchmark, e2e_case, request):
    name, provider = e2e_case
    device = torch.device(_device(request.config))
    info = benchmark.extra_info
    if name == "tiny":
        widths, channels, batch = TINY
        if device.type == "cpu":  # one thread: a shared CI machine stalls two-thread barriers
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            request.addfinalizer(lambda: torch.set_num_threads(threads))
        if provider == PROVIDERS[0]:
            _check_equal(widths, channels, batch, device)
        seqs = _sequences(3, 40)
        step = _make_step(provider, _model(provider, widths, channels, device), seqs, _schedule(seqs, batch, 2), batch,
                          device)
        info.update(suite="train_spgnet_e2e", model="spgnet", config=name, provider=provider, device=device.type,
                    batch=batch, loss=float(benchmark.pedantic(step, rounds=1)), baseline=provider == PROVIDERS[0])
        return
    widths, channels, gpu_batch, cpu_batch = CONFIGS[name]
    if device.type == "cuda":
        batch = gpu_batch
    elif cpu_batch is not None:
        batch = cpu_batch
    elif os.environ.get("FASTPOSE_BENCH_LARGE") == "1":
        batch = LARGE_CPU_BATCH
    else:
        pytest.skip(f"{name} on the CPU: skipped by default (minutes per round); FASTPOSE_BENCH_LARGE=1 runs it at "
                    f"batch {LARGE_CPU_BATCH}")
    seqs = _sequences(16, 1500)
    schedule = _schedule(seqs, batch, 8)
    step = _make_step(provider, _model(provider, widths, channels, device), seqs, schedule, batch, device)
    step()  # warm-up: allocator, oneDNN / cuDNN algorithm choice
    t0 = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    once = time.perf_counter() - t0
    if device.type == "cuda":
        timer = CudaEventTarget(step, device)
        rounds = int(min(50, max(10, 5.0 / max(once, 1e-6))))
        result = benchmark.pedantic(timer, rounds=rounds, iterations=1)
        median_s = statistics.median(timer.times_ms) / 1e3
        info["time_source"] = "cuda_events"
    else:
        rounds = int(min(20, max(5, 10.0 / max(once, 1e-6))))
        result = benchmark.pedantic(step, rounds=rounds, iterations=1)
        median_s = statistics.median(benchmark.stats.stats.data)
        info["time_source"] = "host_clock"
    benchmark.group = f"train_spgnet_e2e {name} B{batch}"
    info.update(suite="train_spgnet_e2e", model="spgnet", config=name, provider=provider, device=device.type,
                batch=batch, frames_out=FRAMES_OUT, filter_widths=list(widths), channels=channels,
                threads=torch.get_num_threads(), median_ms=median_s * 1e3,
                frames_per_second=batch * FRAMES_OUT / median_s, rounds=rounds, loss=float(result),
                baseline=provider == PROVIDERS[0],
                loadavg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None)


def _probe(argv=None) -> None:
    """Interleaved probe (not a test): ``python -m benchmarks.test_bench_train_e2e_spgnet --threads 2
    --rounds 15`` alternates one step of each provider at 27f-256c (CPU batch 256) and prints the
    median step time, frames/s and the ratio -- steadier than two separate timing runs on a shared
    machine, where the load changes between them."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.test_bench_train_e2e_spgnet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="27f-256c")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1:
        parser.error(f"--threads and --rounds must be >= 1, received {args.threads}, {args.rounds}")
    torch.set_num_threads(args.threads)
    widths, channels, _, cpu_batch = CONFIGS[args.config]
    batch = cpu_batch or LARGE_CPU_BATCH
    device = torch.device("cpu")
    seqs = _sequences(16, 1500)
    schedule = _schedule(seqs, batch, 8)
    steps = {p: _make_step(p, _model(p, widths, channels, device), seqs, schedule, batch, device) for p in PROVIDERS}
    for step in steps.values():  # warm-up
        step()
        step()
    times = {p: [] for p in PROVIDERS}
    for _ in range(args.rounds):
        for p, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[p].append(time.perf_counter() - t0)
    med = {p: statistics.median(v) for p, v in times.items()}
    print(f"{args.config}, CPU batch {batch}, k = {FRAMES_OUT}, {args.threads} threads, {args.rounds} interleaved rounds")
    for p in PROVIDERS:
        print(f"  {p:18s} median {1e3 * med[p]:7.1f} ms  {batch * FRAMES_OUT / med[p]:8.0f} frames/s")
    print(f"  fastpose / videopose3d-style: {med[PROVIDERS[0]] / med[PROVIDERS[1]]:.2f}x")


if __name__ == "__main__":
    _probe()
