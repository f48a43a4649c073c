"""Why ONNX Runtime trails eager PyTorch on SPGNet-243 at batch 32: an interleaved A/B study.

Run (CPU; the numbers quoted in :mod:`fastpose.engine.onnx` come from this)::

    OMP_NUM_THREADS=1 python -m fastpose.engine._ort_study --threads 1 --repeats 7

Every variant runs on the same weights and the same inputs, interleaved at the level of single
calls: each call of a repeat runs every variant once, in an order rotated from call to call, so a
slow spell of a shared machine hits all variants alike. Each call is timed twice: wall clock and
the process's CPU time (``time.process_time``, all threads; with one thread it excludes the time
the process waits for a core, which is most of the noise on a loaded machine, but not cache or
memory-bandwidth contention). Reported per variant and clock: the median latency, the median over
repeats of ``eager / variant`` (speed-up over eager, > 1 = faster) and its min..max over repeats,
which is the noise of the measurement.

Variants (each an ONNX Runtime session unless named ``eager``):

* ``eager-strided``: PyTorch, the windows model (strided convolutions), the reference.
* ``ort``: the exported windows model with the session options fastpose uses by default.
* ``ort-spin``: the same with ORT's thread-pool spin-waiting left on (ORT's own default).
* ``ort-basic`` / ``ort-extended``: graph optimisation level BASIC / EXTENDED instead of ALL.
* ``ort-static``: exported with a static batch of 32 (no dynamic dimension in the graph).
* ``ort-noopt``: exported without onnxscript's graph optimiser (BatchNorm not folded into Conv).
* ``eager-gemm`` / ``ort-gemm``: the windows model as channels-last matrix products with the
  BatchNorms folded (``fastpose.engine._models._SPGNetWindowsGemm``, what fastpose exports).
* ``eager-video`` / ``ort-video``: the full (dilated) model over one sequence of 32 + 242 frames,
  which yields the same 32 output frames (the layout choice, applied to both engines).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

__all__: list[str] = []


def _median_ms(fn, x, calls: int) -> float:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn(x)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(out)


def _session(path: Path, threads: int, level: str = "all", spin: bool = False):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x):
        return sess.run(None, {name: x.numpy()})

    return run


def main(argv=None) -> int:
    from . import deployable
    from ._models import _SPGNetWindowsGemm, model_deployable
    from .onnx import export_onnx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--channels", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--variants", default="all", help="comma-separated variant names (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = {"filter_widths": (3, 3, 3, 3, 3), "channels": args.channels}
    dep = deployable("spgnet", config=cfg)
    model = dep.module.model
    video = model_deployable(model, video=True)
    b = args.batch
    r = model.receptive_field
    windows = dep.example_inputs(b, seed=1)[0]  # (B, 243, J, 2)
    # the same B output frames from one sequence: B consecutive windows of one (B + R - 1)-frame clip
    seq = dep.example_inputs(1, seed=2)[0][:, :1].expand(1, b + r - 1, -1, -1).contiguous()
    seq = seq + 0.01 * torch.randn(seq.shape, generator=torch.Generator().manual_seed(3))
    seq_windows = seq[0].unfold(0, r, 1).permute(0, 3, 1, 2).contiguous()  # (B, R, J, 2)
    core = video.module.model
    pad = model.total_pad

    def eager_windows(x):
        with torch.inference_mode():
            return dep.module(x)

    def eager_video_core(x):  # the full model without the edge padding (x already holds the context)
        with torch.inference_mode():
            return core(x, strided=False)

    want = set(args.variants.split(",")) if args.variants != "all" else None
    variants: dict = {"eager-strided": (eager_windows, windows)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def add(name, build):
            if want is None or name in want:
                t0 = time.perf_counter()
                variants[name] = build()
                print(f"built {name} in {time.perf_counter() - t0:.1f} s", flush=True)

        export_onnx(dep, tmp / "w.onnx", max_batch=1024, rewrite=False)  # SPGNet's Conv1d graph as written
        add("ort", lambda: (_session(tmp / "w.onnx", args.threads), windows))
        add("ort-spin", lambda: (_session(tmp / "w.onnx", args.threads, spin=True), windows))
        add("ort-basic", lambda: (_session(tmp / "w.onnx", args.threads, "basic"), windows))
        add("ort-extended", lambda: (_session(tmp / "w.onnx", args.threads, "extended"), windows))

        def static():
            export_onnx(dep, tmp / "s.onnx", inputs=(windows,), dynamic_batch=False, rewrite=False)
            return _session(tmp / "s.onnx", args.threads), windows

        add("ort-static", static)

        def noopt():
            from . import onnx as onnx_mod

            ep = onnx_mod.export_program(dep, (windows[:2],))
            prog = onnx_mod._to_onnx_program(ep, 18, dep.input_names, dep.output_names, optimize=False)
            prog.save(str(tmp / "n.onnx"))
            return _session(tmp / "n.onnx", args.threads), windows

        add("ort-noopt", noopt)
        gemm = _SPGNetWindowsGemm(model).eval()

        def eager_gemm(x):
            with torch.inference_mode():
                return gemm(x)

        add("eager-gemm", lambda: (eager_gemm, windows))

        def ort_gemm():
            meta = export_onnx(dep, tmp / "g.onnx", max_batch=1024)  # fastpose's default export
            assert "SPGNetWindowsGemm" in meta.extra["graph"], meta.extra["graph"]
            return _session(tmp / "g.onnx", args.threads), windows

        add("ort-gemm", ort_gemm)
        add("eager-video", lambda: (eager_video_core, seq))

        def ort_video():
            # the video export pads inside the graph; feed it the unpadded centre so both see the same frames
            export_onnx(video, tmp / "v.onnx", max_batch=8)
            run = _session(tmp / "v.onnx", args.threads)
            return run, seq[:, pad: seq.shape[1] - pad].contiguous()

        add("ort-video", ort_video)
        # sanity: same outputs as eager on the strided windows (the video variants on their own frames)
        ref = eager_windows(seq_windows)[0]
        if "ort-video" in variants:  # the whole clip in: output frames pad .. pad + B - 1 are the B windows
            got = torch.as_tensor(variants["ort-video"][0](seq)[0])[0, pad: pad + b]
            err = (got - ref).abs().max().item()
            print(f"video layout vs windows: max|diff| {err:.2e} (max|out| {ref.abs().max().item():.2e}) "
                  f"over {tuple(ref.shape)}")
        for fn, x in variants.values():  # warm-up
            fn(x)
            fn(x)
        names = list(variants)
        wall: dict[str, list[list[float]]] = {k: [] for k in names}
        cpu: dict[str, list[list[float]]] = {k: [] for k in names}
        for rep in range(args.repeats):
            for k in names:
                wall[k].append([])
                cpu[k].append([])
            for call in range(args.calls):
                # one call of every variant in turn, the order rotated per call: a slow spell of the
                # shared machine hits all variants alike
                shift = (rep * args.calls + call) % len(names)
                for k in names[shift:] + names[:shift]:
                    fn, x = variants[k]
                    c0, t0 = time.process_time_ns(), time.perf_counter_ns()
                    fn(x)
                    wall[k][-1].append((time.perf_counter_ns() - t0) / 1e6)
                    cpu[k][-1].append((time.process_time_ns() - c0) / 1e6)
            print(f"repeat {rep}: " + ", ".join(f"{k} {statistics.median(wall[k][-1]):.1f}/"
                                                f"{statistics.median(cpu[k][-1]):.1f}" for k in names)
                  + " ms (wall/cpu)", flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\nSPGNet-243 ({args.channels} ch), batch {b}, {args.threads} thread(s), {args.repeats} repeats x "
          f"{args.calls} calls, one call per variant in rotating order; load average {load}")
    print("speed-up = eager-strided / variant, from the medians of each repeat; min..max over repeats = noise")
    print(f"{'variant':<15} {'wall ms':>9} {'speed-up':>9} {'min..max':>12}   {'cpu ms':>9} {'speed-up':>9} "
          f"{'min..max':>12}")
    for k in names:
        cols = []
        for table in (wall, cpu):
            meds = [statistics.median(r) for r in table[k]]
            base = [statistics.median(r) for r in table["eager-strided"]]
            rs = [bb / m for bb, m in zip(base, meds, strict=True)]
            cols.append(f"{statistics.median(meds):>9.1f} {statistics.median(rs):>8.2f}x "
                        f"{min(rs):>5.2f}..{max(rs):<5.2f}")
        print(f"{k:<15} {cols[0]}   {cols[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
