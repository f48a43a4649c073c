"""Sub-commands of the ``fastpose`` command line; each module exposes ``add_parser(subparsers)``."""
