"""``fastpose train MODEL ...``: train one of the models (``fastpose train spgnet --help``).

Adding a model: write ``fastpose/train/<name>.py`` exposing ``add_arguments(parser)`` and
``run(args) -> int``, and add ``"<name>": "fastpose.train.<name>"`` to :data:`MODELS`.
Every training module runs unchanged under ``torchrun --nproc_per_node N -m fastpose train ...``.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["MODELS", "add_parser"]

#: model name -> module with add_arguments(parser) and run(args) -> int
MODELS: dict[str, str] = {
    "spgnet": "fastpose.train.spgnet",
    "volumetric": "fastpose.train.volumetric",
}


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (spgnet, ...); see 'fastpose train MODEL --help'",
                       description=__doc__.split("\n\n")[0])
    models = p.add_subparsers(dest="model", metavar="MODEL")
    models.required = True
    for name, module in MODELS.items():
        mod = importlib.import_module(module)
        doc = (mod.__doc__ or name).strip().split("\n")[0]
        mp = models.add_parser(name, help=doc, description=doc,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(mp)
        mp.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
        mp.set_defaults(func=_runner(mod.run))


def _runner(run):
    def func(args: argparse.Namespace) -> int:
        _set_threads(args.threads)
        return run(args)

    return func


def _set_threads(n: int | None) -> None:
    if n is not None:
        import torch

        if n < 1:
            raise SystemExit(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)
