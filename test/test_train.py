"""Training: learns a learnable problem, stops early keeping the best weights, writes logs."""
import json

from learning_data import (PERIOD_NS, smooth_actions, synthetic_spec, write_synthetic_bag,
                           write_synthetic_bags)
from llava_drive.features.store import write_feature_file
from llava_drive.learning.checkpoint import load_checkpoint
from llava_drive.learning.dataset import build_windows, DatasetError, load_feature_files
from llava_drive.learning.evaluate_offline import predict_windows
from llava_drive.learning.train import action_loss_weights, train, TrainConfig
import numpy as np
import pytest


def test_training_learns_a_linear_problem_and_writes_everything(tmp_path):
    write_synthetic_bags(tmp_path / 'features', 5, frames=200)
    out = tmp_path / 'model'
    lines = []
    metrics = train([tmp_path / 'features'], out,
                    TrainConfig(hidden_size=64, epochs=30, batch_size=64, patience=0),
                    progress=False, log=lines.append)
    history = json.loads((out / 'history.json').read_text())
    assert history['train_loss'][-1] < 0.1 * history['train_loss'][0]
    assert metrics['val_steer_r2'] > 0.95
    assert metrics['val_throttle_r2'] > 0.9
    assert metrics['val_steer_mae'] < 0.05
    assert metrics['epochs_run'] == 30 and not metrics['stopped_early']
    assert metrics['train_windows'] == 800 and metrics['val_windows'] == 200
    names = {p.name for p in out.iterdir()}
    assert {'model.safetensors', 'config.json', 'train_config.json', 'loss_curves.png',
            'history.json', 'logs'} <= names
    assert (out / 'loss_curves.png').read_bytes().startswith(b'\x89PNG')
    assert any(p.name.startswith('events.out.tfevents') for p in (out / 'logs').iterdir())
    config = json.loads((out / 'config.json').read_text())
    assert config['metrics']['val_steer_r2'] == pytest.approx(metrics['val_steer_r2'])
    train_config = json.loads((out / 'train_config.json').read_text())
    assert len(train_config['split']['val_bags']) == 1
    assert not set(train_config['split']['val_bags']) & set(train_config['split']['train_bags'])
    table = '\n'.join(lines)
    assert 'steer' in table and 'validation' in table


def test_wide_correlated_features_train_thanks_to_warmup(tmp_path):
    # 2048 dimensions that all carry the same signal, like pooled LLaVA states: Adam's first
    # full-size steps move them coherently and saturate tanh for good (steer R^2 0.05 measured
    # with warmup_steps=0); the default warmup keeps training on track.
    dim = 2048
    projection = np.random.default_rng(1234).normal(size=(3, dim)) + 1.0
    for index in range(4):
        rng = np.random.default_rng(index)
        actions = smooth_actions(rng, 400)
        features = actions @ projection + 0.3 * rng.normal(size=(400, dim))
        write_feature_file(tmp_path / f'bag_{index}.safetensors', features, actions,
                           1_000_000_000 + np.arange(400) * PERIOD_NS, 5 + rng.normal(size=400),
                           np.arange(400) * 2 // 400, synthetic_spec(feature_dim=dim),
                           {'source_bag': f'bags/bag_{index}'})
    metrics = train([tmp_path], tmp_path / 'model',
                    TrainConfig(epochs=15, batch_size=64, patience=0), progress=False, log=None)
    assert metrics['val_steer_r2'] > 0.95


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    # Features carry no information: validation loss rises once the head memorises noise.
    paths = write_synthetic_bags(tmp_path / 'features', 4, frames=120, learnable=False)
    out = tmp_path / 'model'
    config = TrainConfig(hidden_size=256, epochs=200, batch_size=32, lr=3e-3,
                         weight_decay=0.0, patience=3, seed=1, scale_loss=False,
                         min_epochs=0, val_smoothing=0.0)
    metrics = train(paths, out, config, progress=False, log=None)
    assert metrics['stopped_early']
    assert metrics['epochs_run'] == metrics['best_epoch'] + 3 < 200
    history = json.loads((out / 'history.json').read_text())
    assert min(history['val_loss']) == pytest.approx(metrics['val_loss'])
    # The checkpoint holds the best epoch's weights: its validation loss is the minimum.
    head, saved = load_checkpoint(out)
    val_bags = json.loads((out / 'train_config.json').read_text())['split']['val_bags']
    val = build_windows(load_feature_files(
        [p for p in paths if p.stem in val_bags]), window=1)
    loss = np.mean((predict_windows(head, val) - val.targets()) ** 2)
    assert loss == pytest.approx(metrics['val_loss'], rel=1e-4)
    assert saved['metrics']['best_epoch'] == metrics['best_epoch']


def test_gru_with_speed_trains_on_windows(tmp_path):
    write_synthetic_bags(tmp_path, 3, frames=100)
    metrics = train([tmp_path], tmp_path / 'gru', TrainConfig(
        head='gru', window=3, use_speed=True, hidden_size=16, epochs=5, batch_size=64),
        progress=False, log=None)
    assert metrics['train_windows'] + metrics['val_windows'] == 3 * 2 * (50 - 2)
    head, config = load_checkpoint(tmp_path / 'gru')
    assert head.window == 3 and head.uses_speed and config['head']['kind'] == 'gru'


def test_feature_files_with_different_specs_are_refused(tmp_path):
    write_synthetic_bag(tmp_path / 'a.safetensors')
    other_spec = synthetic_spec(mode='last_token', grid=None)
    write_synthetic_bag(tmp_path / 'b.safetensors', spec=other_spec)
    with pytest.raises(DatasetError, match='mode: a.safetensors "image_grid", '
                                           'b.safetensors "last_token"'):
        train([tmp_path], tmp_path / 'model', TrainConfig(epochs=1), progress=False, log=None)
    assert not (tmp_path / 'model' / 'model.safetensors').exists()


def test_loss_weights_scale_by_label_variance_so_steering_counts():
    rng = np.random.default_rng(0)
    targets = np.stack([0.05 * rng.normal(size=500), rng.uniform(size=500),
                        np.zeros(500)], axis=1)
    weights = action_loss_weights(TrainConfig(), targets)
    variance = np.maximum(targets.var(0), TrainConfig().min_label_variance)
    np.testing.assert_allclose(weights, (1 / variance) / (1 / variance).sum())
    assert weights[0] > 5 * weights[1]  # small-spread steering is not drowned
    assert weights[2] <= weights[0]  # nor outweighed by a brake that is never pressed
    plain = action_loss_weights(TrainConfig(scale_loss=False, loss_weights=(2, 1, 1)), targets)
    np.testing.assert_allclose(plain, [0.5, 0.25, 0.25])


@pytest.mark.parametrize('changes, message', [
    ({'head': 'cnn'}, "head must be one of .* got 'cnn'"),
    ({'epochs': 0}, 'epochs must be a positive integer, got 0'),
    ({'lr': -1.0}, 'lr must be a positive number, got -1.0'),
    ({'val_fraction': 1.0}, r'val_fraction must be in \(0, 1\), got 1.0'),
    ({'split_by': 'frame'}, "split_by must be one of .* got 'frame'"),
    ({'loss_weights': (1.0, 1.0)}, r'loss_weights must be 3 numbers'),
    ({'patience': -1}, 'patience must be an integer >= 0, got -1'),
    ({'warmup_steps': 1.5}, 'warmup_steps must be an integer >= 0, got 1.5'),
    ({'head': 'transformer', 'hidden_size': 30, 'num_heads': 4}, 'hidden_size 30'),
    ({'device': 'gpu0'}, r"device 'gpu0' is not a torch device \(cpu, cuda, cuda:N\)"),
    ({'device': 'cuda:7'}, r"device 'cuda:7' requested but (this torch .* has no usable CUDA "
                           r'device|only \d CUDA device)'),
])
def test_train_config_names_the_bad_value(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_early_stopping_waits_for_min_epochs_and_follows_the_smoothed_loss(tmp_path):
    paths = write_synthetic_bags(tmp_path / 'features', 4, frames=120, learnable=False)
    config = TrainConfig(hidden_size=64, epochs=200, batch_size=32, lr=3e-3, patience=3,
                         seed=1, min_epochs=25, val_smoothing=0.8)
    metrics = train(paths, tmp_path / 'model', config, progress=False, log=None)
    history = json.loads((tmp_path / 'model' / 'history.json').read_text())
    assert metrics['epochs_run'] >= 25
    smoothed = history['val_loss_smoothed']
    assert metrics['best_epoch'] == int(np.argmin(smoothed)) + 1
    assert metrics['val_loss'] == pytest.approx(history['val_loss'][metrics['best_epoch'] - 1])
    # The average: 0.8 of the past, 0.2 of the new epoch.
    assert smoothed[1] == pytest.approx(0.8 * smoothed[0] + 0.2 * history['val_loss'][1])
    for bad in ({'val_smoothing': 1.0}, {'val_smoothing': -0.1}, {'min_epochs': -1}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_train_refuses_a_feature_file_with_bad_numbers_in_one_line(tmp_path, capsys):
    from llava_drive.cli import main
    from safetensors import safe_open
    from safetensors.numpy import save_file
    paths = write_synthetic_bags(tmp_path / 'features', 3, frames=60)
    with safe_open(str(paths[1]), framework='numpy') as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    tensors['features'][7, 3] = np.nan  # as a damaged or hand-made file would hold
    save_file(tensors, str(paths[1]), metadata=metadata)
    out = tmp_path / 'model'
    code = main(['train', str(tmp_path / 'features'), '--out', str(out), '--epochs', '2',
                 '--no-progress'])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count('\n') == 1 and 'Traceback' not in error
    assert str(paths[1]) in error and 'frame 7' in error and 'non-finite features' in error
    assert not out.exists()


def test_a_failed_training_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    from llava_drive.learning import train as train_module
    write_synthetic_bags(tmp_path / 'features', 3, frames=60)
    out = tmp_path / 'models' / 'mlp'
    config = TrainConfig(hidden_size=8, epochs=2, batch_size=64, patience=0)

    def plot_fails(*args):
        raise OSError(28, 'No space left on device')

    with monkeypatch.context() as patch:
        patch.setattr(train_module, 'plot_loss_curves', plot_fails)
        with pytest.raises(OSError, match='No space left'):
            train([tmp_path / 'features'], out, config, progress=False, log=None)
    assert list((tmp_path / 'models').iterdir()) == []
    train([tmp_path / 'features'], out, config, progress=False, log=None)
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    with monkeypatch.context() as patch:
        patch.setattr(train_module, 'plot_loss_curves', plot_fails)
        with pytest.raises(OSError):
            train([tmp_path / 'features'], out, TrainConfig(hidden_size=16, epochs=2),
                  progress=False, log=None)
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before
    assert [path.name for path in (tmp_path / 'models').iterdir()] == ['mlp']
    assert load_checkpoint(out)[1]['head']['hidden_size'] == 8
