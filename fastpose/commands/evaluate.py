"""``fastpose evaluate --checkpoint PATH``: per-action Protocol #1/#2/#3 and MPJVE tables.

The checkpoint's architecture record names its model; the model's training module provides
``add_evaluate_arguments(parser)`` (data flags) and ``evaluate_checkpoint(args) -> EvaluationReport``.
To support another model, add it to :data:`EVALUATORS`.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

__all__ = ["EVALUATORS", "add_parser"]

#: model name (the checkpoint's arch["model"]) -> training module
EVALUATORS: dict[str, str] = {
    "spgnet": "fastpose.train.spgnet",
    "volumetric": "fastpose.train.volumetric",
}


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint per action (VideoPose3D protocols)",
                       description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       conflict_handler="resolve")  # models may share data flags
    p.add_argument("--checkpoint", required=True, help="checkpoint written by 'fastpose train'")
    p.add_argument("--out", default=None, help="directory for evaluation.json/.md (default: the checkpoint's)")
    p.add_argument("--no-flip-test", action="store_true", help="no test-time flip augmentation")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    for module in EVALUATORS.values():  # each model's data flags
        importlib.import_module(module).add_evaluate_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from fastpose.train import common

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    model = common.load_checkpoint(args.checkpoint)["arch"].get("model")
    if model not in EVALUATORS:
        raise SystemExit(f"fastpose evaluate: no evaluator for model {model!r}; known: {sorted(EVALUATORS)}")
    report = importlib.import_module(EVALUATORS[model]).evaluate_checkpoint(args)
    print(report.table())
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    pj, pm = report.save(out)
    print(f"evaluation: {pj}, {pm}")
    return 0
