"""The ``fastpose`` command line.

Each sub-command lives in ``fastpose/commands/<name>.py`` and exposes ``add_parser(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Building the parsers imports no torch,
Triton or Inductor (``fastpose --help`` answers in well under a second): argument definitions live
in torch-free modules, heavy imports happen inside ``func``.

Errors: a user error -- a bad flag or value, a missing, unreadable or corrupt file, an unwritable
directory, a checkpoint of another model -- prints **one line** to stderr and exits with status 2;
``--debug`` (anywhere on the command line, or ``FASTPOSE_DEBUG=1``) prints the traceback instead.
Ctrl-C exits with status 130 (training first saves a resumable checkpoint). Anything else is a
bug: its traceback is printed and the status is 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["HelpFormatter", "build_parser", "main"]

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

# Exception classes (by name, so that this module need not import torch to recognise them) whose
# message is a complete explanation of a user error: printed as one line, exit status 2.
_USER_ERRORS = frozenset({
    "CommandError", "CheckpointError", "DataError", "EngineLoadError", "BackendNotSupportedError",
    "ArgumentTypeError", "ValueError", "OSError",  # OSError covers FileNotFoundError, PermissionError, ...
})


# Errors raised only for a user's input, by code that explains them fully: no "--debug" hint. (A
# ValueError or OSError may also come from deeper code; their line ends with a pointer to --debug.)
_EXPLAINED = frozenset({"CommandError", "CheckpointError", "DataError", "ArgumentTypeError", "OutputDirError"})


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (examples keep their layout) and every flag's default shown once.

    ``(default: X)`` is appended unless the help already mentions its default, the default is
    ``None`` / ``False`` (an unset option, an off switch) or the flag is a positional.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or "%(default)" in text:
            return text
        default = action.default
        if default is None or default is False or default == () or default is argparse.SUPPRESS:
            return text
        if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)
        return f"{text} (default: {shown})".replace("%", "%%") if text else f"(default: {shown})"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``fastpose train spgnet: error: ... (see --help)``."""

    def error(self, message: str):  # noqa: D401 (argparse's API)
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _set_formatter(parser: argparse.ArgumentParser) -> None:
    """Give every (sub-)parser :class:`HelpFormatter` (sub-command modules may have chosen another)."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _set_formatter(child)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``fastpose`` parser (imports only torch-free modules)."""
    parser = _Parser(prog="fastpose", formatter_class=HelpFormatter,
                     description="fastpose: fused kernels and models for 3D human pose estimation")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the traceback instead of one line (also after the sub-command)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for mod in _COMMANDS:
        importlib.import_module(mod).add_parser(sub)
    _set_formatter(parser)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    model = getattr(args, "model", None) if getattr(args, "command", None) == "train" else None
    parts = ["fastpose", getattr(args, "command", None), model]
    return " ".join(p for p in parts if p)


def _is_user_error(exc: BaseException) -> bool:
    return any(cls.__name__ in _USER_ERRORS for cls in type(exc).__mro__)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (torch and numpy messages may span several)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if isinstance(exc, KeyError):  # str(KeyError) is the quoted key
        text = f"missing {text}"
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run ``fastpose ARGS``; returns the exit status (0 ok, 1 failure or bug, 2 user error, 130 Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("FASTPOSE_DEBUG", "0") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a parse error (2, already printed on one line)
        return int(exc.code or 0) if not isinstance(exc.code, str) else _fail(exc.code, "fastpose")
    name = _command_name(args)
    args.debug = debug  # commands that catch their own errors re-raise them with --debug
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if isinstance(exc.code, str):  # raise SystemExit("message"): a user error
            if debug:
                raise
            return _fail(exc.code, name)
        return int(exc.code or 0)
    except Exception as exc:
        if debug or not _is_user_error(exc):
            raise
        hint = "" if type(exc).__name__ in _EXPLAINED else " (--debug shows where)"
        return _fail(_one_line(exc) + hint, name)


def _fail(message: str, name: str) -> int:
    message = " ".join(message.split("\n"))
    if not message.startswith("fastpose"):
        message = f"{name}: error: {message}"
    print(message, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
