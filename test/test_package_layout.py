"""Guard rails for the package layout: every module imports, every command has help."""
import argparse
import ast
import importlib
from pathlib import Path
import pkgutil
import subprocess
import sys

import llava_drive
from llava_drive.cli import build_parser
import pytest

PACKAGE_DIR = Path(llava_drive.__file__).resolve().parent
ARCHITECTURE = PACKAGE_DIR.parent / 'docs' / 'architecture.md'


def all_modules():
    return sorted(info.name for info in pkgutil.walk_packages([str(PACKAGE_DIR)], 'llava_drive.'))


# Imports a module may lack outside a ROS install / CARLA machine (the launch files need launch).
OPTIONAL = {'launch', 'launch_ros', 'carla'}


@pytest.mark.parametrize('name', all_modules())
def test_every_module_imports(name):
    try:
        assert importlib.import_module(name).__name__ == name
    except ModuleNotFoundError as error:
        assert error.name.split('.')[0] in OPTIONAL, f'{name}: {error}'


def test_top_level_holds_few_leaves_and_each_package_states_its_purpose():
    leaves = sorted(p.name for p in PACKAGE_DIR.glob('*.py'))
    assert len(leaves) <= 7, leaves
    architecture = ARCHITECTURE.read_text()
    packages = sorted(p.parent for p in PACKAGE_DIR.glob('*/__init__.py'))
    assert len(packages) >= 8
    for package in packages:
        docstring = ast.get_docstring(ast.parse((package / '__init__.py').read_text()))
        assert docstring, f'{package.name}/__init__.py has no docstring'
        assert f'`llava_drive/{package.name}/`' in architecture, (
            f'{package.name} is missing from the package map in docs/architecture.md')


def _subcommands(parser, prefix=()):
    """Yield the argv prefix of every (nested) subcommand of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _subcommands(sub, prefix + (name,))


COMMANDS = sorted(set(_subcommands(build_parser())))


def test_the_command_list_is_complete():
    names = {command[0] for command in COMMANDS}
    assert {'record', 'drive', 'evaluate', 'bag', 'extract', 'train', 'demo'} <= names


@pytest.mark.parametrize('command', COMMANDS, ids=' '.join)
def test_every_subcommand_has_help(command):
    result = subprocess.run([sys.executable, '-m', 'llava_drive.cli', *command, '--help'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'usage: llava-drive ' + ' '.join(command) in ' '.join(result.stdout.split())


def test_no_reference_to_documents_outside_the_repository():
    root = PACKAGE_DIR.parent
    suffixes = ('.py', '.md', '.xml', '.yaml', '.sh')
    files = [p for p in root.rglob('*') if p.is_file() and p.suffix in suffixes
             and not {'.venv', '.git', 'build', 'install'} & set(p.parts)]
    offenders = [str(p.relative_to(root)) for p in files
                 if 'DESIGN' + '.md' in p.read_text(errors='replace')]
    assert offenders == []
