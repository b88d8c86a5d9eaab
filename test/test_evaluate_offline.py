"""Offline evaluation and the ``train`` / ``evaluate-offline`` commands end to end."""
import json
import subprocess
import sys

from learning_data import synthetic_spec, write_synthetic_bag, write_synthetic_bags
from llava_drive.cli import main
from llava_drive.learning.checkpoint import FeatureSpecMismatch, load_checkpoint
from llava_drive.learning.dataset import build_windows, load_feature_files
from llava_drive.learning.evaluate_offline import evaluate_offline
from llava_drive.learning.metrics import action_metrics
import numpy as np
import pytest


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train a two-frame MLP through the CLI on 4 bags; hold out 2 other bags."""
    root = tmp_path_factory.mktemp('offline')
    write_synthetic_bags(root / 'train', 4, frames=200)
    heldout = write_synthetic_bags(root / 'heldout', 2, frames=160, seed=100)
    code = main(['train', str(root / 'train'), '--out', str(root / 'model'), '--head', 'mlp',
                 '--window', '2', '--hidden-size', '32', '--epochs', '30', '--batch-size',
                 '64', '--lr', '3e-3', '--loss-weights', '2,1,1', '--dropout', '0',
                 '--weight-decay', '1e-4', '--no-progress'])
    assert code == 0
    return root, heldout


def test_cli_train_writes_a_checkpoint_with_the_requested_head(trained):
    root, _ = trained
    head, config = load_checkpoint(root / 'model')
    assert config['head']['kind'] == 'mlp' and head.window == 2
    train_config = json.loads((root / 'model' / 'train_config.json').read_text())
    assert train_config['loss_weights'] == [2.0, 1.0, 1.0]
    assert len(train_config['feature_files']) == 4


def test_evaluate_offline_metrics_match_a_direct_computation(trained, tmp_path):
    root, heldout = trained
    report = evaluate_offline(root / 'model', heldout, tmp_path)
    head, _ = load_checkpoint(root / 'model')
    windows = build_windows(load_feature_files(heldout), 2)
    features, speed, actions = windows.batch(np.arange(len(windows)))
    expected = action_metrics(head.predict(features, speed), actions)
    assert report['windows'] == len(windows) == 2 * 2 * (80 - 1)
    for name, value in expected.items():
        assert report['metrics'][name] == pytest.approx(value, rel=1e-5)
    assert report['metrics']['steer_r2'] > 0.9
    assert sorted(report['per_bag']) == ['bag_0', 'bag_1']
    for plot in report['plots']:
        assert (tmp_path / plot.split('/')[-1]).read_bytes().startswith(b'\x89PNG')
    saved = json.loads((tmp_path / 'metrics.json').read_text())
    assert saved['metrics']['steer_mae'] == pytest.approx(expected['steer_mae'], rel=1e-5)


def test_cli_evaluate_offline_prints_metrics(trained, tmp_path, capsys):
    root, heldout = trained
    assert main(['evaluate-offline', str(root / 'model'), str(heldout[0]), '--json']) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) >= {'steer_mae', 'steer_rmse', 'steer_r2', 'brake_mae'}
    assert main(['evaluate-offline', str(root / 'model'), *map(str, heldout),
                 '--out', str(tmp_path / 'report')]) == 0
    out = capsys.readouterr().out
    assert 'steer' in out and 'R^2' in out
    assert (tmp_path / 'report' / 'bag_1_controls.png').is_file()


def test_features_of_another_spec_are_refused(trained, tmp_path, capsys):
    root, _ = trained
    other = tmp_path / 'other.safetensors'
    write_synthetic_bag(other, spec=synthetic_spec(grid=3))
    with pytest.raises(FeatureSpecMismatch, match='grid: checkpoint 2, feature files 3'):
        evaluate_offline(root / 'model', [other])
    assert main(['evaluate-offline', str(root / 'model'), str(other)]) == 2
    assert 'grid: checkpoint 2, feature files 3' in capsys.readouterr().err


def test_cli_train_reports_bad_input_without_traceback(tmp_path, capsys):
    write_synthetic_bag(tmp_path / 'one.safetensors', episodes=1)
    code = main(['train', str(tmp_path), '--out', str(tmp_path / 'm'), '--no-progress'])
    assert code == 2
    assert 'cannot split by episode: only 1 episode' in capsys.readouterr().err
    assert main(['train', str(tmp_path), '--out', str(tmp_path / 'm'), '--epochs', '0']) == 2
    assert 'epochs must be a positive integer, got 0' in capsys.readouterr().err


def test_help_is_fast_and_does_not_import_torch():
    code = ('import sys; from llava_drive.cli import main\n'
            'try:\n    main(["train", "--help"])\nexcept SystemExit:\n    pass\n'
            'print("torch" in sys.modules)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert '--head {mlp,gru,transformer}' in result.stdout
    assert result.stdout.strip().endswith('False')


def test_a_nan_frame_or_a_damaged_checkpoint_is_refused_in_one_line(trained, tmp_path, capsys):
    import shutil

    from safetensors import safe_open
    from safetensors.numpy import save_file
    root, heldout = trained
    nan_file = tmp_path / heldout[0].name
    shutil.copy(heldout[0].with_suffix('.json'), nan_file.with_suffix('.json'))
    with safe_open(str(heldout[0]), framework='numpy') as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    tensors['actions'][11, 0] = np.nan
    save_file(tensors, str(nan_file), metadata=metadata)
    assert main(['evaluate-offline', str(root / 'model'), str(nan_file)]) == 2
    error = capsys.readouterr().err
    assert error.count('\n') == 1 and 'frame 11' in error and 'non-finite actions' in error
    broken = tmp_path / 'model'
    shutil.copytree(root / 'model', broken)
    (broken / 'model.safetensors').write_bytes(b'\0' * 16)
    assert main(['evaluate-offline', str(broken), str(heldout[0])]) == 2
    error = capsys.readouterr().err
    assert error.count('\n') == 1 and 'corrupt' in error and 'Traceback' not in error
