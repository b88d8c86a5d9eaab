"""
The ``llava-drive`` command: one entry point, one subcommand per job.

Each package registers its own subcommands in its ``cli`` module, so this file only lists
them. Registration modules import nothing heavy (torch, rclpy) at module level: ``--help``
stays fast and works without the optional parts installed.
"""
import argparse
import importlib
import sys

# Modules providing ``register(subparsers)``; each parser sets ``func(args) -> int``.
COMMAND_MODULES = [
    'llava_drive.recording.cli',
    'llava_drive.evaluation.cli',
    'llava_drive.carla.cli',
    'llava_drive.bag.cli',
    'llava_drive.features.cli',
    'llava_drive.learning.cli',
    'llava_drive.demo',
]


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog='llava-drive',
        description='Record, review, extract LLaVA features, train and drive (llava_drive).')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` and run the chosen subcommand; return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
