"""Damaged exclusions.yaml and metadata.yaml, trim edge cases: one clear line, never a crash."""
import argparse

from fixtures_llava import tiny_llava_dir, write_bag  # noqa: F401
from llava_drive.bag import format as bagfmt
from llava_drive.bag.info import bag_info
from llava_drive.bag.reader import BagReadError, count_pairs
from llava_drive.bag.trim import (add_exclusions, clear_exclusions, exclusions_path,
                                  ExclusionsError, load_exclusions)
from llava_drive.cli import main
from llava_drive.features import cli as features_cli
import pytest
import yaml

START_NS = 1_700_000_000_000_000_000
STEP_NS = 50_000_000  # the fixture's pairs are 20 Hz apart

DAMAGED = {
    'not yaml': 'version: 1\nexclusions: [ {start_ns: 5\n',
    'binary': b'\xff\xfe\x00garbage\x80',
    'a list': '- 1\n- 2\n',
    'a string': 'just text\n',
    'exclusions not a list': 'version: 1\nexclusions: {start_ns: 1}\n',
    'entry not a mapping': 'version: 1\nexclusions: [7]\n',
    'unknown key': 'version: 1\nexclusions: [{start_ns: 1, colour: red}]\n',
    'bound a string': 'version: 1\nexclusions: [{start_ns: soon}]\n',
    'bound a float': 'version: 1\nexclusions: [{start_ns: .inf}]\n',
    'bound a bool': 'version: 1\nexclusions: [{episode: true}]\n',
    'reversed range': 'version: 1\nexclusions: [{start_ns: 9, end_ns: 3}]\n',
    'negative stamp': 'version: 1\nexclusions: [{start_ns: -9}]\n',
    'empty entry': 'version: 1\nexclusions: [{}]\n',
    'future version': 'version: 7\nexclusions: []\n',
    'unknown top key': 'version: 1\nexclusions: []\nextra: 1\n',
}


@pytest.fixture
def bag(tmp_path):
    """Return a recorded bag with 8 pairs in episode 2."""
    path = tmp_path / 'run'
    write_bag(path, count=8, episode=2, start_ns=START_NS)
    return path


def damage(path, content):
    """Write ``content`` (text or bytes) as the bag's exclusions.yaml."""
    target = exclusions_path(path)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)


def one_line_error(capsys) -> str:
    """Return the single stderr line of a refused command (and assert there is one)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith('error: ') and 'Traceback' not in err[0]
    return err[0]


@pytest.mark.parametrize('kind', sorted(DAMAGED))
def test_damaged_exclusions_give_one_line_everywhere(bag, tmp_path, capsys, kind):
    """info, trim --list/--exclude, review and the reader refuse in one line; --clear fixes."""
    damage(bag, DAMAGED[kind])
    with pytest.raises(ExclusionsError) as error:
        load_exclusions(bag)
    assert isinstance(error.value, BagReadError) and isinstance(error.value, ValueError)
    assert str(exclusions_path(bag)) in str(error.value) and '--clear' in str(error.value)
    assert '\n' not in str(error.value)
    with pytest.raises(BagReadError):
        count_pairs(bag)  # what extraction and training call
    assert main(['bag', 'info', str(bag)]) == 1
    out = capsys.readouterr()
    assert 'Pairs:            8' in out.out  # the rest of the report still shows
    assert out.err.strip().count('\n') == 0 and 'exclusions.yaml' in out.err
    for argv in (['bag', 'trim', str(bag), '--list'],
                 ['bag', 'trim', str(bag), '--exclude', '0:0.1'],
                 ['bag', 'review', str(bag), '--out', str(tmp_path / 'review'), '--no-video',
                  '--quiet']):
        assert main(argv) == 1
        assert 'exclusions.yaml' in one_line_error(capsys)
    assert main(['bag', 'trim', str(bag), '--clear']) == 0
    assert 'removed the damaged' in capsys.readouterr().out
    assert not exclusions_path(bag).exists() and count_pairs(bag) == 8


def test_one_bad_bag_does_not_abort_extraction(tmp_path, tiny_llava_dir, capsys):  # noqa: F811
    """A bag with a damaged exclusions.yaml is reported failed; the other bag is extracted."""
    good, bad = tmp_path / 'good', tmp_path / 'bad'
    write_bag(good, count=4)
    write_bag(bad, count=4)
    damage(bad, DAMAGED['a list'])
    parser = argparse.ArgumentParser(prog='llava-drive')
    features_cli.register(parser.add_subparsers(dest='command'))
    out = tmp_path / 'features'
    args = parser.parse_args(['extract', str(bad), str(good), '--model', str(tiny_llava_dir),
                              '--out', str(out), '--no-progress'])
    assert args.func(args) == 1
    captured = capsys.readouterr()
    assert f'failed   {bad}' in captured.out and 'exclusions.yaml' in captured.out
    assert sorted(p.name for p in out.iterdir()) == ['good.json', 'good.safetensors']


@pytest.mark.parametrize('spec', ['inf:5', '0:nan', '-inf:', 'nan:nan', '1e300:', ':1e30',
                                  'ns:1e20:', 'ns:99999999999999999999:', 'ns::-5',
                                  'episode:1.5', 'episode:', '3:1', 'x:y', '1:2:3'])
def test_bad_bounds_are_refused_in_one_line(bag, capsys, spec):
    """Infinite, NaN, out-of-range and malformed bounds never reach exclusions.yaml."""
    assert main(['bag', 'trim', str(bag), f'--exclude={spec}']) == 1  # '=': '-inf:' is no option
    assert spec in one_line_error(capsys)
    assert not exclusions_path(bag).exists()


@pytest.mark.parametrize('spec', ['100:200', ':-1', 'episode:5', '0.01:0.04',
                                  f'ns:{START_NS + 10 ** 15}:'])
def test_exclusions_that_cover_no_pair_are_refused(bag, capsys, spec):
    """A range past the end, before the start, between two pairs or an absent episode."""
    assert main(['bag', 'trim', str(bag), '--exclude', '0.1:0.1', '--exclude', spec]) == 1
    line = one_line_error(capsys)
    assert 'covers no pair' in line and 'episodes [2]' in line
    assert not exclusions_path(bag).exists()  # all or nothing: the good spec is not stored
    add_exclusions(bag, ['0.1:0.1', 'episode:2'])
    assert count_pairs(bag) == 0 and count_pairs(bag, honour_exclusions=False) == 8


def test_list_shaped_or_broken_metadata_does_not_crash_trim(bag, capsys):
    """metadata.yaml as a list, as garbage, or without a start: one line from every command."""
    for content in ('- 1\n- 2\n', 'rosbag2_bagfile_information: [1]\n', '{{{\n',
                    'rosbag2_bagfile_information: {version: 8}\n'):
        (bag / bagfmt.METADATA_FILE).write_text(content)
        for argv in (['bag', 'trim', str(bag), '--exclude', '0:0.1'],
                     ['bag', 'trim', str(bag), '--list'], ['bag', 'info', str(bag)]):
            assert main(argv) == 1, (content, argv)
            assert str(bag) in one_line_error(capsys)
    (bag / bagfmt.METADATA_FILE).write_text('- 1\n- 2\n')
    with pytest.raises(bagfmt.MetadataError, match='not rosbag2 metadata'):
        bagfmt.read_metadata(bag)


def test_clear_reports_the_count_and_round_trips(bag):
    """Valid exclusions load back exactly; clear returns how many there were."""
    add_exclusions(bag, ['0:0.05', 'episode:2'], reason='curb')
    stored = yaml.safe_load(exclusions_path(bag).read_text())
    assert stored['version'] == 1 and len(stored['exclusions']) == 2
    assert len(load_exclusions(bag)) == 2
    assert bag_info(bag)['pairs_after_exclusions'] == 0
    assert clear_exclusions(bag) == 2 and clear_exclusions(bag) == 0
