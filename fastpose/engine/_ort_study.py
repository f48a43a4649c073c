"""Why ONNX Runtime trails eager PyTorch on SPGNet-243 at batch 32: an interleaved A/B study.

Run (CPU; the numbers quoted in :mod:`fastpose.engine.onnx` come from this)::

    OMP_NUM_THREADS=1 python -m fastpose.engine._ort_study --threads 1 --repeats 7

Every variant runs on the same weights and the same inputs; one *repeat* times every variant
back to back (``--calls`` calls each, the median kept), so slow phases of a shared machine hit
all variants alike. Reported per variant: the median over repeats of ``eager / variant`` (the
speed-up of the variant over eager, > 1 = faster) and its min..max over repeats, which is the
noise of the measurement.

Variants (each an ONNX Runtime session unless named ``eager``):

* ``eager-strided``: PyTorch, the windows model (strided convolutions), the reference.
* ``ort``: the exported windows model with the session options fastpose uses by default.
* ``ort-spin``: the same with ORT's thread-pool spin-waiting left on (ORT's own default).
* ``ort-basic`` / ``ort-extended``: graph optimisation level BASIC / EXTENDED instead of ALL.
* ``ort-static``: exported with a static batch of 32 (no dynamic dimension in the graph).
* ``ort-noopt``: exported without onnxscript's graph optimiser (BatchNorm not folded into Conv).
* ``eager-video`` / ``ort-video``: the full (dilated) model over one sequence of 32 + 242 frames,
  which yields the same 32 output frames (the layout choice, applied to both engines).
"""

from __future__ import annotations

import argparse
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
    from ._models import model_deployable
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

        export_onnx(dep, tmp / "w.onnx", max_batch=1024)
        add("ort", lambda: (_session(tmp / "w.onnx", args.threads), windows))
        add("ort-spin", lambda: (_session(tmp / "w.onnx", args.threads, spin=True), windows))
        add("ort-basic", lambda: (_session(tmp / "w.onnx", args.threads, "basic"), windows))
        add("ort-extended", lambda: (_session(tmp / "w.onnx", args.threads, "extended"), windows))

        def static():
            export_onnx(dep, tmp / "s.onnx", inputs=(windows,), dynamic_batch=False)
            return _session(tmp / "s.onnx", args.threads), windows

        add("ort-static", static)

        def noopt():
            from . import onnx as onnx_mod

            ep = onnx_mod.export_program(dep, (windows[:2],))
            prog = onnx_mod._to_onnx_program(ep, 18, dep.input_names, dep.output_names, optimize=False)
            prog.save(str(tmp / "n.onnx"))
            return _session(tmp / "n.onnx", args.threads), windows

        add("ort-noopt", noopt)
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
        ratios: dict[str, list[float]] = {k: [] for k in variants if k != "eager-strided"}
        times: dict[str, list[float]] = {k: [] for k in variants}
        for fn, x in variants.values():  # warm-up
            fn(x)
            fn(x)
        for rep in range(args.repeats):
            base = None
            for name, (fn, x) in variants.items():
                ms = _median_ms(fn, x, args.calls)
                times[name].append(ms)
                if name == "eager-strided":
                    base = ms
            for name in ratios:
                ratios[name].append(base / times[name][-1])
            print(f"repeat {rep}: " + ", ".join(f"{k} {v[-1]:.1f} ms" for k, v in times.items()), flush=True)
    print(f"\nSPGNet-243 ({args.channels} ch), batch {b}, {args.threads} thread(s), "
          f"{args.repeats} interleaved repeats x {args.calls} calls (median per repeat)")
    print(f"{'variant':<15} {'median ms':>10} {'eager/variant':>14} {'min..max':>14}")
    print(f"{'eager-strided':<15} {statistics.median(times['eager-strided']):>10.1f} {'1.00x':>14}")
    for name, rs in ratios.items():
        print(f"{name:<15} {statistics.median(times[name]):>10.1f} {statistics.median(rs):>13.2f}x "
              f"{min(rs):>6.2f}..{max(rs):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
