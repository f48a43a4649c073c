"""The ``fastpose`` command line.

Each sub-command lives in ``fastpose/commands/<name>.py`` and exposes ``add_parser(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Modules are imported lazily-cheaply: only
argparse wiring happens at start-up; heavy imports happen inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

_COMMANDS = [
    "fastpose.commands.info",
    "fastpose.commands.bench",
    "fastpose.commands.export",
    "fastpose.commands.latency",
    "fastpose.commands.train",
    "fastpose.commands.evaluate",
    "fastpose.commands.visualize",
    "fastpose.commands.demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastpose", description="fastpose: fused kernels and models for 3D human pose estimation"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _COMMANDS:
        importlib.import_module(mod).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
