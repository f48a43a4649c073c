"""``fastpose train MODEL ...``: train a model (``fastpose train spgnet --help``).

Adding a model: write ``fastpose/train/<name>.py`` exposing ``run(args) -> int``, a torch-free
function that adds its flags (``fastpose/train/args.py``), and add an entry to :data:`MODELS`.
Every training module runs unchanged under ``torchrun --nproc_per_node N -m fastpose train ...``.

Threads: without ``--threads``, a machine whose load average already reaches its core count gets
one torch thread (OpenMP threads that wait for each other at every small kernel made a training
step 10x slower with 2 threads than with 1 on a busy 2-core machine), an idle one torch's default.
"""

from __future__ import annotations

import argparse
import importlib

from ..train import args as train_args

__all__ = ["MODELS", "add_parser"]

#: model name -> (one-line description, flag-adding function (torch-free), module with run(args) -> int)
MODELS: dict[str, tuple[str, object, str]] = {
    "spgnet": ("SPGNet 2D-to-3D temporal lifting (VideoPose3D-style) on synthetic, CMU or Human3.6M data",
               train_args.add_spgnet_arguments, "fastpose.train.spgnet"),
    "volumetric": ("the volumetric ResNet-50 image model on rendered or Human3.6M images",
                   train_args.add_volumetric_arguments, "fastpose.train.volumetric"),
}


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (spgnet, volumetric); see 'fastpose train MODEL --help'",
                       description=__doc__.split("\n\n")[0].replace("``", "'"))
    models = p.add_subparsers(dest="model", metavar="MODEL")
    models.required = True
    for name, (doc, add_arguments, module) in MODELS.items():
        mp = models.add_parser(name, help=doc, description=f"fastpose train {name}: train {doc}.")
        add_arguments(mp)
        mp.add_argument("--threads", type=train_args.positive_int, default=None,
                        help="torch CPU threads (default: 1 when the machine is already busy, else torch's choice)")
        mp.set_defaults(func=_runner(module))


def _runner(module: str):
    def func(args: argparse.Namespace) -> int:
        from ..train import common

        common.set_threads(args.threads)
        return importlib.import_module(module).run(args)

    return func

