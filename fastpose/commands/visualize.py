"""``fastpose visualize --checkpoint PATH``: a PNG and a GIF of one sequence: the input 2D keypoints over the
camera's image frame, and the 3D prediction overlaid on the ground truth (mm, per-frame MPJPE in the title)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    from fastpose.train.args import add_data_arguments  # torch-free: the parser builds without torch

    p = sub.add_parser("visualize", help="draw input 2D, and prediction over ground truth in 3D, to PNG and GIF",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="an SPGNet checkpoint")
    add_data_arguments(p, default_data="synthetic")
    p.add_argument("--subject", default="S9", help="subject of the sequence to draw")
    p.add_argument("--action", default="Walking", help="sequence name, e.g. 'Walking' or 'Walking 1'")
    p.add_argument("--camera", type=int, default=0, help="camera index 0-3")
    p.add_argument("--frames", default="0:100", help="START:STOP frame range of the GIF")
    p.add_argument("--frame", type=int, default=None, help="frame of the PNG (default: START)")
    p.add_argument("--step", type=int, default=2, help="draw every N-th frame in the GIF")
    p.add_argument("--no-flip-test", action="store_true", help="no test-time flip augmentation")
    p.add_argument("--out", default="outputs/visualize", help="output directory")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from fastpose.train.spgnet import load_data, predict_for_figure

    seqs = load_data(args, [args.subject])
    match = [s for s in seqs if s.action == args.action and s.camera_index == args.camera]
    if not match:
        names = sorted({s.action for s in seqs})
        raise SystemExit(f"fastpose visualize: no sequence {args.subject!r} / {args.action!r} / camera "
                         f"{args.camera}; actions: {names}")
    seq = match[0]
    start, stop = _range(args.frames, seq.num_frames)
    pred = predict_for_figure(args, seq)
    paths = render(seq, pred, Path(args.out), start, stop, args.frame, args.step)
    for p in paths:
        print(f"wrote {p}")
    return 0


def render(seq, pred, out: Path, start: int, stop: int, frame: int | None = None, step: int = 2) -> list[Path]:
    """PNG of ``frame`` (default ``start``) and GIF of [start, stop) for one PoseSequence."""
    from fastpose.viz import render_poses

    stem = f"{seq.subject}_{seq.action.replace(' ', '_')}_cam{seq.camera_index}"
    return render_poses(seq.keypoints_2d, pred, seq.positions_3d, png_path=out / f"{stem}.png",
                        gif_path=out / f"{stem}.gif", frame=start if frame is None else frame,
                        frames=(start, stop), res=seq.res, step=step,
                        title=f"{seq.subject} {seq.action}, camera {seq.camera_index}")


def _range(text: str, n: int) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        raise SystemExit(f"--frames must be START:STOP, got {text!r}") from None
    a, b = max(0, a), min(n, b)
    if a >= b:
        raise SystemExit(f"--frames {text!r} is empty for a sequence of {n} frames")
    return a, b
