"""Checkpoints: safetensors + JSON only, identical predictions after reload, spec checks."""
import json
import subprocess
import sys

from learning_data import synthetic_spec
from llava_drive.learning import checkpoint as checkpoint_module
from llava_drive.learning.checkpoint import (check_feature_spec, CheckpointError,
                                             FeatureSpecMismatch, load_checkpoint,
                                             save_checkpoint)
from llava_drive.learning.checkpoint_files import check_checkpoint_files, check_safetensors_header
from llava_drive.learning.heads import build_head
import numpy as np
import pytest
from safetensors.torch import load_file, save_file
import torch


def trained_like_head(kind):
    """Return a head with random weights and non-trivial normalization statistics."""
    torch.manual_seed(1)
    head = build_head({'kind': kind, 'feature_dim': 16, 'window': 2, 'use_speed': True,
                       'hidden_size': 8, 'num_heads': 2})
    rng = np.random.default_rng(0)
    head.set_normalization(rng.normal(size=16), rng.uniform(0.5, 2.0, 16), 6.0, 2.5)
    return head.eval()


@pytest.mark.parametrize('kind', ['mlp', 'gru', 'transformer'])
def test_save_and_load_give_identical_predictions(tmp_path, kind):
    head = trained_like_head(kind)
    save_checkpoint(tmp_path, head, synthetic_spec(), {'val_steer_mae': 0.1},
                    {'head': kind})
    loaded, config = load_checkpoint(tmp_path)
    features = torch.randn(10, 2, 16) * 3
    speed = torch.rand(10, 2) * 10
    assert torch.equal(loaded(features, speed), head(features, speed))
    assert config['head']['kind'] == kind
    assert not loaded.training


def test_checkpoint_holds_only_safetensors_and_json(tmp_path):
    head = trained_like_head('mlp')
    save_checkpoint(tmp_path, head, synthetic_spec(),
                    {'val_steer_mae': 0.1, 'val_steer_r2': float('nan')}, {'lr': 0.001})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'config.json', 'model.safetensors', 'train_config.json']
    for path in tmp_path.iterdir():
        assert not path.read_bytes().startswith(b'\x80')  # pickle protocol 2+ magic
    weights = load_file(str(tmp_path / 'model.safetensors'))
    assert set(weights) == set(head.state_dict())
    config = json.loads((tmp_path / 'config.json').read_text())
    assert config['feature_spec'] == synthetic_spec().to_dict()
    assert config['metrics'] == {'val_steer_mae': 0.1, 'val_steer_r2': None}
    np.testing.assert_allclose(config['normalization']['feature_mean'],
                               head.feature_mean.numpy(), rtol=1e-6)
    assert config['normalization']['speed_mean'] == 6.0
    assert config['output_ranges']['steer'] == [-1.0, 1.0]
    assert json.loads((tmp_path / 'train_config.json').read_text()) == {'lr': 0.001}


def test_mismatched_feature_spec_is_refused_naming_every_difference(tmp_path):
    save_checkpoint(tmp_path, trained_like_head('mlp'), synthetic_spec())
    _, config = load_checkpoint(tmp_path)
    check_feature_spec(config, synthetic_spec(package_version='9.9.9'))  # version is ignored
    check_feature_spec(config, synthetic_spec().to_dict())
    with pytest.raises(FeatureSpecMismatch) as error:
        check_feature_spec(config, synthetic_spec(layer=7, preprocessing='resize'))
    message = str(error.value)
    assert 'layer: checkpoint 2, extractor 7' in message
    assert 'preprocessing: checkpoint "pad", extractor "resize"' in message


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    save_checkpoint(tmp_path, trained_like_head('mlp'), synthetic_spec())
    config = json.loads((tmp_path / 'config.json').read_text())
    config['head']['hidden_size'] = 32
    (tmp_path / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match='does not fit'):
        load_checkpoint(tmp_path)
    (tmp_path / 'model.safetensors').unlink()
    with pytest.raises(CheckpointError, match='no model.safetensors'):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match='not a checkpoint directory'):
        load_checkpoint(tmp_path / 'missing')


def test_feature_dim_of_head_and_spec_must_agree(tmp_path):
    with pytest.raises(CheckpointError, match='feature_dim 32'):
        save_checkpoint(tmp_path, trained_like_head('mlp'), synthetic_spec(feature_dim=32))


def one_line_refusal(directory, message):
    """Assert that loading ``directory`` is refused with a one-line CheckpointError."""
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(directory)
    assert '\n' not in str(error.value)


def test_damaged_or_incomplete_checkpoints_are_refused_in_one_line(tmp_path):
    save_checkpoint(tmp_path, trained_like_head('mlp'), synthetic_spec(), {}, {'lr': 0.1})
    files = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    weights = tmp_path / 'model.safetensors'
    nan_state = {name: tensor.clone() for name, tensor in load_file(str(weights)).items()}
    next(t for t in nan_state.values() if t.is_floating_point() and t.ndim == 2)[0, 0] = np.nan
    cases = [('model.safetensors', b'', 'corrupt .*model.safetensors'),
             ('model.safetensors', files['model.safetensors'][:100], 'corrupt'),
             ('model.safetensors', b'\x80\x04garbage' * 10, 'corrupt'),
             ('config.json', b'[1, 2]', 'a JSON list, not an object'),
             ('config.json', b'{"format_version": 1', 'corrupt .*config.json'),
             ('train_config.json', b'{', 'corrupt .*train_config.json'),
             ('train_config.json', None, 'has no train_config.json'),
             ('model.safetensors', None, 'has no model.safetensors')]
    for name, content, message in cases:
        if content is None:
            (tmp_path / name).unlink()
        else:
            (tmp_path / name).write_bytes(content)
        one_line_refusal(tmp_path, message)
        (tmp_path / name).write_bytes(files[name])
    save_file(nan_state, str(weights))
    one_line_refusal(tmp_path, 'non-finite weights')
    weights.write_bytes(files['model.safetensors'])
    load_checkpoint(tmp_path)


def test_a_failed_save_leaves_the_previous_checkpoint_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / 'ckpt'
    head = trained_like_head('mlp')

    def disk_full(path, document):
        raise OSError(28, 'No space left on device')

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module, '_write_json', disk_full)
        with pytest.raises(OSError, match='No space left'):
            save_checkpoint(target, head, synthetic_spec())
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no staging directory
    save_checkpoint(target, head, synthetic_spec(), {'val_steer_mae': 0.1})
    before = {path.name: path.read_bytes() for path in target.iterdir()}
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module, '_write_json', disk_full)
        with pytest.raises(OSError):
            save_checkpoint(target, trained_like_head('gru'), synthetic_spec())
    assert {path.name: path.read_bytes() for path in target.iterdir()} == before
    assert [path.name for path in tmp_path.iterdir()] == ['ckpt']
    # A successful save replaces the whole checkpoint.
    save_checkpoint(target, trained_like_head('gru'), synthetic_spec())
    assert load_checkpoint(target)[1]['head']['kind'] == 'gru'
    assert [path.name for path in tmp_path.iterdir()] == ['ckpt']


def test_a_directory_that_is_no_checkpoint_is_never_replaced(tmp_path):
    (tmp_path / 'notes.txt').write_text('keep me')
    with pytest.raises(CheckpointError, match='non-empty directory without a checkpoint'):
        save_checkpoint(tmp_path, trained_like_head('mlp'), synthetic_spec())
    assert [path.name for path in tmp_path.iterdir()] == ['notes.txt']
    with pytest.raises(CheckpointError, match='not a directory'):
        save_checkpoint(tmp_path / 'notes.txt', trained_like_head('mlp'), synthetic_spec())
    assert (tmp_path / 'notes.txt').read_text() == 'keep me'


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    """Return a safetensors file of ``header`` (as JSON) and ``data``."""
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, 'little') + text + data


@pytest.mark.parametrize('header, data, message', [
    ({'w': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}}, bytes(4),
     r"tensor 'w' ends at data byte 8, the file holds 4 \(truncated\?\)"),
    ({'w': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}}, bytes(12),
     r'the tensors do not tile the 12 data bytes \(a gap or overlap at byte 8\)'),
    ({'w': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 4]}}, bytes(4),
     r"tensor 'w': data_offsets 0..4 do not hold its shape"),
    ({'a': {'dtype': 'F32', 'shape': [1], 'data_offsets': [0, 4]},
      'b': {'dtype': 'F32', 'shape': [1], 'data_offsets': [2, 6]}}, bytes(8),
     r'the tensors do not tile the 8 data bytes \(a gap or overlap at byte 4\)'),
    ({'w': {'dtype': 'F33', 'shape': [1], 'data_offsets': [0, 4]}}, bytes(4),
     r"tensor 'w' has no valid dtype, shape and data_offsets"),
    ({'w': {'dtype': 'F32', 'shape': [-1], 'data_offsets': [0, 4]}}, bytes(4),
     r"tensor 'w' has no valid dtype"),
    ({'w': [1, 2]}, b'', r"tensor 'w' has no valid dtype"),
])
def test_safetensors_headers_are_checked_against_the_file(tmp_path, header, data, message):
    path = tmp_path / 'model.safetensors'
    path.write_bytes(safetensors_bytes(header, data))
    with pytest.raises(CheckpointError, match=f'^corrupt {path}: {message}'):
        check_safetensors_header(path)


def test_safetensors_header_accepts_what_safetensors_writes(tmp_path):
    path = tmp_path / 'model.safetensors'
    state = {'empty': torch.zeros(0, 3), 'half': torch.ones(3, dtype=torch.float16),
             'long': torch.arange(5), 'flag': torch.tensor([True])}
    save_file(state, str(path), metadata={'format': 'pt'})
    header = check_safetensors_header(path)
    assert set(header) == set(state) | {'__metadata__'}
    path.write_bytes(b'\xff' * 8 + b'{}')
    with pytest.raises(CheckpointError, match='header length 18446744073709551615 does not '
                                              'fit the file'):
        check_safetensors_header(path)
    path.write_bytes((4).to_bytes(8, 'little') + b'\xff\xfe{}')
    with pytest.raises(CheckpointError, match='header is not JSON'):
        check_safetensors_header(path)


def test_the_file_checks_need_no_torch(tmp_path):
    save_checkpoint(tmp_path / 'ok', trained_like_head('mlp'), synthetic_spec(), {}, {})
    script = ('import sys; from llava_drive.learning.checkpoint_files import '
              'check_checkpoint_files; check_checkpoint_files(sys.argv[1]); '
              'assert "torch" not in sys.modules and "safetensors" not in sys.modules')
    subprocess.run([sys.executable, '-c', script, str(tmp_path / 'ok')], check=True,
                   timeout=120)
    assert check_checkpoint_files(tmp_path / 'ok')['head']['kind'] == 'mlp'
