"""``fastpose evaluate --checkpoint PATH``: per-action Protocol #1/#2/#3 (+ MPJVE) tables, per joint and
per sequence.

By default a checkpoint is scored on the held-out part of the data it was trained with (recorded
in the checkpoint); flags change single settings, ``--motion FILE.npz`` scores any motion file
(SPGNet). Examples::

    fastpose evaluate --checkpoint outputs/spgnet/checkpoint.pt
    fastpose evaluate --checkpoint outputs/spgnet/checkpoint.pt --motion walks.npz --subjects S9,S11 --noise-px 5

The checkpoint's architecture record names its model; the model's training module provides
``evaluate_checkpoint(args) -> EvaluationReport`` (or ``evaluate_checkpoint_sets(args)``, one report per
data source). To support another model, add it to :data:`EVALUATORS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ..train import args as train_args
from . import CommandError

__all__ = ["EVALUATORS", "add_parser"]

#: model name (the checkpoint's arch["model"]) -> training module
EVALUATORS: dict[str, str] = {
    "spgnet": "fastpose.train.spgnet",
    "volumetric": "fastpose.train.volumetric",
}


_SEQUENCE_ROWS = 40  # longer per-sequence tables go to the files only, unless --breakdown


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint per action, joint and sequence (VideoPose3D protocols)",
                       description=__doc__.split("\n\nThe checkpoint's")[0].replace("``", "'").replace("::", ":"))
    p.add_argument("--checkpoint", required=True, type=train_args.existing_file,
                   help="checkpoint written by 'fastpose train'")
    p.add_argument("--out", default=None,
                   help="directory for evaluation.json/.md (default: the checkpoint's directory)")
    p.add_argument("--name", default=None,
                   help="file stem of the results: <name>.json/.md (default: 'evaluation'; with --motion FILE "
                        "'evaluation_<FILE's stem>', so the training run's evaluation.json is kept)")
    p.add_argument("--no-flip-test", action="store_true", help="no test-time flip augmentation")
    p.add_argument("--device", default="auto", type=train_args.device_name, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=train_args.positive_int, default=None,
                   help="torch CPU threads (default: 1 when the machine is already busy, else torch's choice)")
    p.add_argument("--breakdown", action="store_true",
                   help="print the per-sequence table however long (the per-joint table is always printed; "
                        "both are always in the .json/.md files)")
    train_args.add_evaluate_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from fastpose.train import common

    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    common.check_writable_dir(out, "--out")  # before minutes of evaluation
    common.set_threads(args.threads)
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {args.device}: CUDA is not available here (torch.cuda.is_available() is "
                           "False); use --device cpu or auto")
    from fastpose.models import load_checkpoint

    net = load_checkpoint(args.checkpoint, device=args.device)  # one-line ValueError for a corrupt file
    model = net.checkpoint_info["model"]
    if model not in EVALUATORS:
        raise CommandError(f"--checkpoint {args.checkpoint}: no evaluator for model {model!r}; known: {sorted(EVALUATORS)}")
    if args.motion is not None and model != "spgnet":
        raise CommandError(f"--motion evaluates a lifting model (spgnet); {args.checkpoint} is a {model!r} checkpoint")
    module = importlib.import_module(EVALUATORS[model])
    if hasattr(module, "evaluate_checkpoint_sets"):
        reports = module.evaluate_checkpoint_sets(args, net)
    else:
        reports = [("", module.evaluate_checkpoint(args, net))]
    for i, (name, report) in enumerate(reports):
        meta = report.meta
        print(f"\n=== {model} on {meta.get('data', '?')}" + (f" ({meta['part']} part)" if meta.get("part") else "")
              + (f", subjects {','.join(meta['subjects'])}" if meta.get("subjects") else ""))
        print(report.table())
        if report.per_joint:
            print("\nper joint (MPJPE, mm):\n" + report.per_joint_table())
        base = args.name or (f"evaluation_{Path(args.motion).stem}" if args.motion else "evaluation")
        pj, pm = report.save(out, stem=base if i == 0 else f"{base}_{name}")
        if args.breakdown or len(report.per_sequence) <= _SEQUENCE_ROWS:
            print("\nper sequence (mm):\n" + report.per_sequence_table())
        else:
            print(f"\nper sequence: {len(report.per_sequence)} rows in {pm} (--breakdown prints them)")
        print(f"evaluation: {pj}, {pm}", file=sys.stdout)
    return 0
