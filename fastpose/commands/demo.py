"""``fastpose demo``: the main job, end to end on the built-in data, on the CPU.

1. every op of ``fastpose.ops`` on each available backend, on a small random sample, against
   the reference (error, gradient error, time);
2. the data: the synthetic Human3.6M-like set, written in the VideoPose3D npz layout and read
   back through the same loader as the real data, and the built-in real motion (CMU motion
   capture, :mod:`fastpose.data.motion`), placed in the Human3.6M room and projected through the
   distorted cameras: its training part through the training subjects' cameras, its held-out
   part (other CMU subjects) through those of S9 and S11;
3. a 27-frame SPGNet trained on synthetic + real training motion for a few minutes (time-boxed;
   progress bar);
4. evaluation, each with its per-action table (Protocols #1-#3, MPJVE), saved as JSON and
   Markdown: the synthetic held-out subjects S9/S11 and the real held-out motion, with
   ground-truth 2D and with detector-like 2D noise of sigma = 5 px;
5. a figure (PNG + animated GIF) of input 2D / prediction / ground truth.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_parser", "demo_train_config", "format_backend_table"]

# The demo's training recipe is one definition, fastpose.train.config.DEMO_PRESET (model, schedule,
# loss weights) + DEMO_DATA (synthetic + CMU motion, synthetic sequence length), shared with
# ``fastpose train spgnet --preset demo``; the README gives the numbers it reaches.


def add_parser(sub) -> None:
    from fastpose.train.config import DEMO_DATA, DEMO_PRESET  # torch-free: --help stays fast

    p = sub.add_parser("demo", help="the main job: ops table, synthetic + real motion, train + evaluate SPGNet, figure",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.add_argument("--minutes", type=float, default=4.0, help="training time budget (minutes)")
    p.add_argument("--epochs", type=int, default=DEMO_PRESET["epochs"],
                   help="training epochs (if the time budget allows)")
    p.add_argument("--channels", type=int, default=DEMO_PRESET["channels"],
                   help="SPGNet channels (the paper uses 1024)")
    p.add_argument("--frames", type=int, default=DEMO_DATA["synthetic_frames"],
                   help="mean frames per synthetic sequence")
    p.add_argument("--frame-stride", type=int, default=DEMO_PRESET["frame_stride"],
                   help="train on every N-th frame (sets the epoch length; consecutive frames are near copies)")
    p.add_argument("--noise-px", type=float, default=5.0, help="2D noise (pixels) of the second evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    p.add_argument("--quick", action="store_true", help="a tiny run (seconds) to check the pipeline")
    p.set_defaults(func=_run)


def demo_train_config(args: argparse.Namespace, out_dir: str | None = None):
    """The :class:`fastpose.train.config.SPGNetTrainConfig` of a ``fastpose demo`` run.

    Every recipe value comes from :data:`fastpose.train.config.DEMO_PRESET` (model, schedule, loss
    weights) and :data:`~fastpose.train.config.DEMO_DATA` (recorded as ``data_config``, so that
    ``fastpose evaluate --checkpoint`` rebuilds the same data); the demo's flags override
    channels, epochs, frame stride, synthetic frames, seed and the time budget (``--minutes``);
    ``--quick`` shrinks the run to 16 channels, one epoch, 6 steps.
    """
    from fastpose.train.config import DEMO_DATA, DEMO_PRESET, TEST_SUBJECTS, TRAIN_SUBJECTS, SPGNetTrainConfig

    values = {**DEMO_PRESET, "channels": args.channels, "epochs": args.epochs, "frame_stride": args.frame_stride}
    if args.quick:
        values.update(channels=16, epochs=1, frame_stride=8)
    data_config = {"data": DEMO_DATA["data"], "keypoints": "gt", "actions": None,
                   "synthetic_frames": 60 if args.quick else args.frames, "synthetic_seed": args.seed,
                   "noise_px": 0.0, "synthetic_drop": 0.0, "train_subjects": list(TRAIN_SUBJECTS),
                   "test_subjects": list(TEST_SUBJECTS)}
    return SPGNetTrainConfig(**values, seed=args.seed, device="cpu", out_dir=out_dir or args.out,
                             time_limit=args.minutes, max_steps=6 if args.quick else None, data_config=data_config)


def format_backend_table(rows: list[dict]) -> str:
    """The rows of :func:`fastpose.ops.backend_table` as an aligned text table."""
    head = ["op", "backend", "status", "max |err|", "max |grad err|", "ms"]

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    # backends that cannot serve this device at all are summarised in one line below the table
    elsewhere = sorted({r["backend"] for r in rows if "device" in r["status"] and r["status"].startswith("not supported")})
    rows = [r for r in rows if r["backend"] not in elsewhere]
    body = [[r["op"], r["backend"], r["status"], num(r.get("max_abs_err"), ".1e"),
             num(r.get("max_abs_grad_err"), ".1e"), num(r.get("ms"), ".2f")] for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))
    text = "\n".join([line(head), "-" * len(line(head)), *map(line, body)])
    if elsewhere:
        text += f"\n(registered but not for this device: {', '.join(elsewhere)})"
    return text


def _run(args: argparse.Namespace) -> int:
    import torch

    from fastpose import ops
    from fastpose.data import (
        TEST_SUBJECTS,
        TRAIN_SUBJECTS,
        SyntheticConfig,
        build_sequences,
        builtin_motion,
        generate_synthetic,
        load_h36m,
        motion_to_sequences,
        write_synthetic,
    )
    from fastpose.train.common import threads_for_load
    from fastpose.train.spgnet import evaluate_spgnet, train_spgnet

    from .visualize import render

    threads = args.threads or threads_for_load(torch.get_num_threads())
    torch.set_num_threads(threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}

    _section("1/5  fastpose.ops on every available backend (small random sample, vs reference)")
    t = time.perf_counter()
    print(format_backend_table(ops.backend_table()))
    timings["ops table"] = time.perf_counter() - t

    _section("2/5  data: built-in synthetic set + built-in real motion (CMU), 4 calibrated cameras with distortion")
    t = time.perf_counter()
    if args.quick:
        syn = SyntheticConfig(seed=args.seed, frames=60, subactions=1,
                              actions=("Walking", "Sitting", "Greeting", "Waiting"))
    else:
        syn = SyntheticConfig(seed=args.seed, frames=args.frames)
    data = generate_synthetic(syn)
    p3, p2 = write_synthetic(data, out / "data")
    syn_train = load_h36m(out / "data", "gt", TRAIN_SUBJECTS)
    syn_test = load_h36m(out / "data", "gt", TEST_SUBJECTS)
    real_train_motion, real_test_motion = builtin_motion("train"), builtin_motion("test")
    if args.quick:  # a few sequences of each part
        real_train_motion = real_train_motion.subset(sorted(real_train_motion.sequences)[::12])
        real_test_motion = real_test_motion.subset(sorted(real_test_motion.sequences)[::8])
    real_train = motion_to_sequences(real_train_motion, TRAIN_SUBJECTS, seed=args.seed)
    real_test = motion_to_sequences(real_test_motion, TEST_SUBJECTS, seed=args.seed)
    noisy_syn = generate_synthetic(SyntheticConfig(**{**syn.__dict__, "subjects": TEST_SUBJECTS,
                                                      "noise_px": args.noise_px}))
    syn_test_noisy = build_sequences(noisy_syn.positions_3d, noisy_syn.positions_2d, TEST_SUBJECTS,
                                     sources=("synthetic positions_3d", f"synthetic positions_2d, {args.noise_px:g} px"))
    real_test_noisy = motion_to_sequences(real_test_motion, TEST_SUBJECTS, seed=args.seed, noise_px=args.noise_px)
    timings["data"] = time.perf_counter() - t
    print(f"synthetic: {data.num_frames} frames x 4 cameras, {len(syn.subjects)} subjects, {len(syn.actions)} "
          f"actions -> {p3}, {p2}")
    print(f"real motion (CMU): train {real_train_motion.num_frames} frames ({len(real_train_motion.sequences)} "
          f"sequences) x {len(TRAIN_SUBJECTS)} subjects' cameras; held out {real_test_motion.num_frames} frames "
          f"({len(real_test_motion.sequences)} sequences, other CMU subjects) x S9/S11 cameras "
          f"({timings['data']:.1f} s)")

    _section(f"3/5  training a 27-frame SPGNet on synthetic + real motion on the CPU ({threads} "
             f"thread{'s' if threads > 1 else ''}, at most {args.minutes:g} minutes)")
    cfg = demo_train_config(args, out_dir=str(out))
    t = time.perf_counter()
    result = train_spgnet(cfg, [*syn_train, *real_train])
    timings["training"] = time.perf_counter() - t
    steps = len(result.step_losses)
    print(f"{steps} steps, {result.frames_per_second:.0f} frames/s, {timings['training']:.0f} s "
          f"({'schedule finished' if result.finished else 'stopped by the time limit'}); "
          f"checkpoint: {result.checkpoint}")
    if cfg.ema_decay > 0:
        print(f"evaluated with the exponential moving average of the weights (decay {cfg.ema_decay:g}; "
              "stored as ema_model in the checkpoint)")

    _section("4/5  evaluation (flip test-time augmentation): synthetic held-out subjects S9/S11 and "
             "real held-out motion, ground-truth 2D and noisy 2D")
    t = time.perf_counter()
    sets = [("synthetic held-out (S9, S11), ground-truth 2D", "synthetic", syn_test),
            ("real held-out motion (CMU, S9/S11 cameras), ground-truth 2D", "real", real_test),
            (f"synthetic held-out, 2D noise {args.noise_px:g} px", "synthetic_noise", syn_test_noisy),
            (f"real held-out motion, 2D noise {args.noise_px:g} px", "real_noise", real_test_noisy)]
    reports, saved, preds = {}, [], {}
    for title, stem, seqs in sets:
        print(f"\n--- {title}")
        report, pr = evaluate_spgnet(result.model, seqs, flip_test=True, progress=True,
                                     meta={"data": stem, "train_data": cfg.data_config["data"],
                                           "train_seconds": timings["training"], "train_steps": steps,
                                           "finished_schedule": result.finished})
        print(report.table())
        reports[stem] = report
        preds[stem] = pr
        # the synthetic ground-truth-2D report keeps the name of earlier versions (evaluation.json)
        saved += report.save(out, stem="evaluation" if stem == "synthetic" else f"evaluation_{stem}")
    timings["evaluation"] = time.perf_counter() - t

    _section("5/5  figures")
    t = time.perf_counter()
    figs = []
    seq = next(s for s in syn_test if s.subject == "S9" and s.action == "Walking" and s.camera_index == 0)
    stop = min(seq.num_frames, 30 if args.quick else 100)
    figs += render(seq, preds["synthetic"][(seq.subject, seq.name, seq.camera_index)], out / "figures", 0, stop,
                   step=3 if args.quick else 2)
    if not args.quick:  # a real held-out sequence too (the GIFs are the slow part of a quick run)
        rseq = next((s for s in real_test if s.subject == "S9" and s.camera_index == 0 and s.action == "Jump"),
                    real_test[0])
        rpred = result.model.predict(rseq.keypoints_2d, flip_test=True).pose.float().cpu().numpy()
        figs += render(rseq, rpred, out / "figures", 0, min(rseq.num_frames, 100), step=2)
    timings["figure"] = time.perf_counter() - t

    _section("outputs")
    total = time.perf_counter() - t_all
    print(f"synthetic data      {p3.parent}/")
    print(f"checkpoint          {result.checkpoint}")
    for i in range(0, len(saved), 2):
        print(f"evaluation          {saved[i]}  {saved[i + 1]}")
    for f in figs:
        print(f"figure              {f}")
    print("\nMPJPE / P-MPJPE (mm, mean over actions), ground-truth 2D | 2D noise "
          f"{args.noise_px:g} px; trained {steps} steps in {timings['training']:.0f} s:")
    for label, clean, noisy in (("synthetic held-out S9/S11 ", "synthetic", "synthetic_noise"),
                                ("real held-out motion (CMU)", "real", "real_noise")):
        a, b = reports[clean].mean, reports[noisy].mean
        print(f"  {label}  {a['mpjpe']:6.1f} / {a['p_mpjpe']:5.1f}   |  {b['mpjpe']:6.1f} / {b['p_mpjpe']:5.1f}")
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + f"; total {total:.0f} s")
    print("\nThe real motion is from the CMU Graphics Lab Motion Capture Database. The data used in this project "
          "was obtained from mocap.cs.cmu.edu. The database was created with funding from NSF EIA-0196217.")
    return 0


def _section(title: str) -> None:
    print(f"\n=== {title}", flush=True)
