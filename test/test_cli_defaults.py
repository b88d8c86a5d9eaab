"""Each default is written once: a command's options equal its options dataclass's defaults."""
import dataclasses

from llava_drive.cli import build_parser
from llava_drive.config_checks import default_of
import pytest
from test_package_layout import COMMANDS


# The commands that build an options dataclass (their parsers set ``make_options``).
OPTIONS_COMMANDS = (('bag', 'review'), ('drive',), ('evaluate',), ('record',), ('train',))


def required_arguments(tmp_path):
    """
    Return ``{command: (argv after it, fields that argv sets)}``.

    Only what a command cannot run without (positionals, a checkpoint) and paths that must
    point into ``tmp_path`` (an absent default directory would be named after the clock).
    """
    checkpoint = tmp_path / 'checkpoint'
    checkpoint.mkdir()
    (checkpoint / 'config.json').write_text('{}')
    return {
        ('record',): (['--out', tmp_path / 'bag', '--log-dir', tmp_path / 'logs'],
                      {'out', 'log_dir'}),
        ('evaluate',): (['--out', tmp_path / 'report'], {'out'}),
        ('drive',): (['--checkpoint', checkpoint], {'checkpoint'}),
        ('bag', 'review'): (['bag', '--out', tmp_path / 'review'], {'out_dir'}),
        ('train',): (['features', '--out', tmp_path / 'trained'], set()),
    }


def _parser_defaults(command):
    """Return the defaults ``set_defaults`` gave ``command``'s own parser."""
    parser = build_parser()
    for name in command:
        action = next(a for a in parser._actions if hasattr(a, 'choices')
                      and isinstance(a.choices, dict) and name in a.choices)
        parser = action.choices[name]
    return parser._defaults


def test_every_command_with_options_is_checked(tmp_path):
    with_options = tuple(sorted(c for c in COMMANDS if 'make_options' in _parser_defaults(c)))
    assert with_options == OPTIONS_COMMANDS
    assert sorted(required_arguments(tmp_path)) == list(OPTIONS_COMMANDS)


def test_default_of_reads_dataclasses_and_functions():
    @dataclasses.dataclass
    class Options:
        needed: str
        size: int = 3
        names: list = dataclasses.field(default_factory=lambda: ['a'])

    def function(a, b=2):
        return a + b

    assert default_of(Options, 'size') == 3
    assert default_of(Options, 'names') == ['a']
    assert default_of(function, 'b') == 2
    for owner, name in ((Options, 'needed'), (Options, 'nothing'), (function, 'a')):
        with pytest.raises(KeyError, match=name):
            default_of(owner, name)


@pytest.mark.parametrize('command', OPTIONS_COMMANDS, ids=' '.join)
def test_command_defaults_are_the_dataclass_defaults(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, given = required_arguments(tmp_path)[command]
    args = build_parser().parse_args([*command, *map(str, argv)])
    options = args.make_options(args)
    reference = type(options)(**{name: getattr(options, name) for name in given})
    differing = {f.name: (getattr(options, f.name), getattr(reference, f.name))
                 for f in dataclasses.fields(options)
                 if getattr(options, f.name) != getattr(reference, f.name)}
    assert differing == {}, f'llava-drive {" ".join(command)}: (CLI, dataclass) {differing}'
