"""``llava-drive extract`` and ``model init-tiny`` on real bags: store, resume, shards, errors."""
import argparse
import os
import subprocess
import sys

from fixtures_llava import tiny_llava_dir, write_bag  # noqa: F401
from llava_drive.bag.reader import read_pairs
from llava_drive.bag.trim import add_exclusions, exclusions_path
from llava_drive.bag.writer import BagWriter
from llava_drive.control import Control
from llava_drive.features import cli as features_cli
from llava_drive.features import extract_bags as extract_module
from llava_drive.features.extract_bags import parse_shard, select_shard
from llava_drive.features.extractor import LlavaFeatureExtractor
from llava_drive.features.spec import model_content_hash
from llava_drive.features.store import load_feature_file
import numpy as np
import pytest


def run(*argv):
    """Run a features subcommand through its own parser; return the exit code."""
    parser = argparse.ArgumentParser(prog='llava-drive')
    features_cli.register(parser.add_subparsers(dest='command'))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    """Provide two small recorded runs: 6 and 9 pairs, episodes 0 and 1."""
    root = tmp_path_factory.mktemp('bags')
    controls = {'run_a': write_bag(root / 'run_a', count=6, episode=0),
                'run_b': write_bag(root / 'run_b', count=9, episode=1,
                                   start_ns=1_700_000_100_000_000_000)}
    return root, controls


def test_extract_round_trip_through_the_llava_drive_command(
        tmp_path, bags, tiny_llava_dir, capsys):  # noqa: F811
    from llava_drive.cli import main

    root, controls = bags
    out = tmp_path / 'features'
    code = main(['extract', str(root / 'run_a'), str(root / 'run_b'), '--model',
                 str(tiny_llava_dir), '--out', str(out), '--batch-size', '4', '--layer', '3'])
    assert code == 0
    assert 'written' in capsys.readouterr().out
    extractor = LlavaFeatureExtractor(tiny_llava_dir, layer=3)
    for name, expected in controls.items():
        stored = load_feature_file(out / (name + '.safetensors'))
        pairs = list(read_pairs(root / name))
        assert stored.num_frames == len(expected) == len(pairs)
        np.testing.assert_allclose(stored.actions, [c.as_array() for c in expected], atol=1e-6)
        np.testing.assert_array_equal(stored.stamps, [p.stamp_ns for p in pairs])
        np.testing.assert_allclose(stored.speed, np.arange(len(expected)))
        assert set(stored.episode.tolist()) == {0 if name == 'run_a' else 1}
        reference = extractor.extract([p.image_rgb for p in pairs]).numpy()
        np.testing.assert_allclose(stored.features, reference, rtol=1e-4, atol=1e-5)
        assert stored.spec == extractor.spec and stored.spec.layer == 3
        assert stored.meta['frames'] == len(expected)
        assert stored.meta['frames_skipped_undecodable'] == 0
        assert stored.meta['source_bag'] == str((root / name).resolve())
    assert sorted(p.name for p in out.iterdir()) == [
        'run_a.json', 'run_a.safetensors', 'run_b.json', 'run_b.safetensors']


def test_resume_skips_finished_bags_and_redoes_changed_ones(
        tmp_path, bags, tiny_llava_dir, capsys):  # noqa: F811
    root, _ = bags
    bag = tmp_path / 'run_c'
    write_bag(bag, count=5)
    out = tmp_path / 'features'
    base = ['extract', bag, root / 'run_a', '--model', tiny_llava_dir, '--out', out,
            '--no-progress']
    assert run(*base) == 0
    target = out / 'run_c.safetensors'
    first = target.stat().st_mtime_ns
    # A leftover temporary file from a killed run never counts.
    (out / '.run_c.safetensors.tmp-99999').write_bytes(b'half a file')
    capsys.readouterr()
    assert run(*base) == 0
    assert capsys.readouterr().out.count('skipped ') == 2
    assert target.stat().st_mtime_ns == first
    # Another layer is another spec: extracted again.
    assert run(*base, '--layer', '1') == 0
    assert load_feature_file(target).spec.layer == 1
    # Trimming the bag changes its fingerprint: extracted again, exclusions honoured.
    add_exclusions(bag, ['ns:%d:%d' % (1_700_000_000_000_000_000, 1_700_000_000_060_000_000)])
    assert run(*base, '--layer', '1') == 0
    trimmed = load_feature_file(target)
    assert trimmed.num_frames == 3 and trimmed.meta['frames_excluded'] == 2
    # Tensors without their sidecar (interrupted write) are not a finished file.
    os.remove(out / 'run_c.json')
    capsys.readouterr()
    assert run(*base, '--layer', '1') == 0
    assert 'written  %s' % bag in capsys.readouterr().out
    stamp = target.stat().st_mtime_ns
    assert run(*base, '--layer', '1', '--overwrite') == 0
    assert target.stat().st_mtime_ns != stamp


def test_shards_split_bags_by_index(tmp_path, bags, tiny_llava_dir):  # noqa: F811
    root, _ = bags
    names = ['b3', 'b0', 'b2', 'b1', 'b4']
    assert [p.name for p in select_shard(names, 0, 2)] == ['b0', 'b2', 'b4']
    assert [p.name for p in select_shard(names + ['b1'], 1, 2)] == ['b1', 'b3']
    assert sorted(p.name for i in range(3) for p in select_shard(names, i, 3)) == sorted(names)
    assert parse_shard('3/4') == (3, 4)
    for bad in ('4/4', '1', 'a/b', '0/0'):
        with pytest.raises(ValueError, match='shard'):
            parse_shard(bad)
    out = tmp_path / 'features'
    argv = ['extract', root / 'run_a', root / 'run_b', '--model', tiny_llava_dir, '--out', out,
            '--no-progress', '--mode', 'vision_cls']
    assert run(*argv, '--shard', '1/2') == 0
    assert sorted(p.name for p in out.glob('*.safetensors')) == ['run_b.safetensors']
    assert run(*argv, '--shard', '0/2') == 0
    assert sorted(p.name for p in out.glob('*.safetensors')) == [
        'run_a.safetensors', 'run_b.safetensors']
    assert run(*argv, '--shard', '2/2') == 2


def test_broken_bags_are_skipped_and_fail_the_run(
        tmp_path, bags, tiny_llava_dir, capsys):  # noqa: F811
    root, _ = bags
    truncated = tmp_path / 'truncated'
    write_bag(truncated, count=6)
    mcap = next(truncated.glob('*.mcap'))
    mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    damaged = tmp_path / 'damaged_exclusions'
    write_bag(damaged, count=3)
    exclusions_path(damaged).write_text('- {start_ns: [\n')
    out = tmp_path / 'features'
    code = run('extract', truncated, tmp_path / 'missing', damaged, root / 'run_a', '--model',
               tiny_llava_dir, '--out', out, '--no-progress')
    assert code == 1
    captured = capsys.readouterr()
    assert '3 of 4 bags failed' in captured.err
    assert 'failed   %s' % (tmp_path / 'missing') in captured.out
    assert 'does not exist' in captured.out
    assert 'failed   %s' % truncated in captured.out
    assert 'failed   %s' % damaged in captured.out and 'exclusions.yaml' in captured.out
    assert '1 bag(s) written, 0 up to date, 3 failed; frames 0 dropped' in captured.out
    assert 'Traceback' not in captured.err
    assert sorted(p.name for p in out.iterdir()) == ['run_a.json', 'run_a.safetensors']


def test_undecodable_frames_are_counted(tmp_path, bags, tiny_llava_dir, monkeypatch):  # noqa
    root, _ = bags
    real_read_pairs = extract_module.read_pairs

    def read_pairs_losing_frame_two(path, honour_exclusions=True, stats=None):
        for index, pair in enumerate(real_read_pairs(path, honour_exclusions, stats=stats)):
            if index == 2:
                stats.undecodable['undecodable_jpeg'] += 1
                stats.pairs -= 1
                continue
            yield pair

    monkeypatch.setattr(extract_module, 'read_pairs', read_pairs_losing_frame_two)
    out = tmp_path / 'features'
    assert run('extract', root / 'run_a', '--model', tiny_llava_dir, '--out', out,
               '--no-progress') == 0
    stored = load_feature_file(out / 'run_a.safetensors')
    assert stored.num_frames == 5 and stored.meta['frames_skipped_undecodable'] == 1
    assert stored.meta['read_stats']['undecodable'] == {'undecodable_jpeg': 1}


def test_bad_numbers_are_dropped_counted_and_logged_once_per_reason(
        tmp_path, tiny_llava_dir, capsys, caplog, monkeypatch):  # noqa: F811
    nan, good = float('nan'), Control(steer=0.1, throttle=0.5)
    controls = [good, Control(steer=nan), good, Control(steer=1.5), Control(throttle=-0.2),
                Control(brake=float('inf')), good, Control(steer=nan), good, good]
    speeds = [3.0] * 8 + [nan, 500.0]
    bag = tmp_path / 'dirty'
    with monkeypatch.context() as patch:
        # Write what another tool (or an older recorder) could have written.
        patch.setattr(BagWriter, '_reject', lambda self, reason, detail: None)
        write_bag(bag, count=10, controls=controls, speeds=speeds)
    assert sum(1 for _ in read_pairs(bag, decode_images=False)) == 10
    real_extract = LlavaFeatureExtractor.extract

    def first_row_overflows(self, images, routes):
        features = real_extract(self, images, routes).clone()
        features[0] = float('inf')  # e.g. a float16 overflow
        return features

    monkeypatch.setattr(LlavaFeatureExtractor, 'extract', first_row_overflows)
    out = tmp_path / 'features'
    assert run('extract', bag, '--model', tiny_llava_dir, '--out', out,
               '--no-progress') == 0
    stored = load_feature_file(out / 'dirty.safetensors')
    expected = {'nan_control': 3, 'control_out_of_range': 2, 'no_speed': 1,
                'speed_out_of_range': 1, 'features_not_finite': 1}
    assert stored.meta['frames_dropped'] == expected
    start = 1_700_000_000_000_000_000
    assert stored.stamps.tolist() == [start + 2 * 50_000_000, start + 6 * 50_000_000]
    np.testing.assert_allclose(stored.actions, [[0.1, 0.5, 0.0]] * 2)
    assert np.isfinite(stored.features).all() and (stored.speed == 3.0).all()
    output = capsys.readouterr().out
    assert '8 dropped (control_out_of_range 2, features_not_finite 1, nan_control 3, ' \
        'no_speed 1, speed_out_of_range 1)' in output
    assert '1 bag(s) written, 0 up to date, 0 failed; frames 8 dropped' in output
    warnings = [r.getMessage() for r in caplog.records if 'dropping frames' in r.getMessage()]
    assert sorted(w.split('dropping frames: ')[1].split(' ')[0] for w in warnings) == \
        sorted(expected)


def test_bad_model_or_arguments_exit_2(tmp_path, bags, capsys):
    root, _ = bags
    code = run('extract', root / 'run_a', '--model', tmp_path / 'no-model', '--out', tmp_path)
    assert code == 2
    assert 'not a model directory (no config.json)' in capsys.readouterr().err


def test_init_tiny_writes_the_deterministic_model(tmp_path, tiny_llava_dir, capsys):  # noqa
    assert run('model', 'init-tiny', '--out', tmp_path / 'tiny') == 0
    assert 'tiny LLaVA written to' in capsys.readouterr().out
    assert model_content_hash(tmp_path / 'tiny') == model_content_hash(tiny_llava_dir)


def test_registering_the_commands_imports_no_torch():
    code = ('import argparse, sys\n'
            'from llava_drive.features import cli\n'
            'cli.register(argparse.ArgumentParser().add_subparsers())\n'
            'print(sorted(m for m in ("torch", "transformers") if m in sys.modules))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == '[]'


def test_init_tiny_refuses_a_file_or_a_non_empty_directory(tmp_path, capsys):
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'keep.txt').write_text('mine')
    (tmp_path / 'afile').write_text('x')
    for out in ('full', 'afile'):
        assert run('model', 'init-tiny', '--out', tmp_path / out) == 2
        error = capsys.readouterr().err.strip()
        assert 'not an empty directory' in error and '\n' not in error
    assert [p.name for p in (tmp_path / 'full').iterdir()] == ['keep.txt']
