"""The README's CARLA steps name only options and launch arguments the code has."""
from pathlib import Path
import re
import shlex

from llava_drive.cli import build_parser
import pytest
from test_launch_files import defaults, load_launch_file

ROOT = Path(__file__).resolve().parents[1]


def carla_section() -> str:
    """Return the README's CARLA section (up to the next top-level section)."""
    text = (ROOT / 'README.md').read_text()
    start = text.index('### CARLA')
    return text[start:text.index('\n## ', start)]


def commands(program: str) -> list:
    """Return every command of ``program`` in the section, one line each, comments dropped."""
    section = carla_section()
    # Fenced blocks line by line (with their continuations), inline code spans whole.
    blocks = re.findall(r'```bash\n(.*?)```', section, re.S)
    lines = [line for block in blocks for line in block.replace('\\\n', ' ').splitlines()]
    lines += re.findall(r'`([^`]+)`', re.sub(r'```.*?```', '', section, flags=re.S))
    found = []
    for line in lines:
        line = ' '.join(line.split()).split(' #')[0].strip()
        line = re.sub(r'^# or: ', '', line)
        if line.startswith(program + ' '):
            found.append(line)
    return found


def test_the_section_has_the_numbered_steps():
    steps = re.findall(r'^(\d+)\. \*\*', carla_section(), re.M)
    assert steps == [str(n) for n in range(1, len(steps) + 1)] and len(steps) >= 8


@pytest.mark.parametrize('command', commands('llava-drive'))
def test_llava_drive_commands_parse(command, monkeypatch):
    import torch
    # The steps run on a GPU machine: --device cuda is checked against one.
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    args = build_parser().parse_args(shlex.split(command)[1:])  # SystemExit: a wrong option
    assert callable(args.func)


def test_every_cli_step_is_checked():
    names = {shlex.split(command)[1] for command in commands('llava-drive')}
    assert {'record', 'extract', 'train', 'drive', 'evaluate', 'carla-setup'} <= names


def test_launch_commands_use_declared_arguments(monkeypatch):
    launches = commands('ros2 launch')
    assert {shlex.split(c)[3] for c in launches} == {'record.launch.py', 'policy.launch.py'}
    for command in launches:
        words = shlex.split(command)
        declared = defaults(load_launch_file(ROOT / 'launch' / words[3], monkeypatch))
        given = dict(word.split(':=', 1) for word in words[4:])
        assert set(given) <= set(declared), (command, set(given) - set(declared))
        assert given['backend'] in ('carla', 'carla_ros_bridge'), command
