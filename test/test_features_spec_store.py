"""Feature specification and feature store: validation, differences, round trip, errors."""
import json
import os

from llava_drive.features import spec as spec_module
from llava_drive.features.spec import FeatureMode, FeatureSpec, model_content_hash
from llava_drive.features.store import (
    feature_file_for_bag, FeatureStoreError, list_feature_files, load_feature_file,
    read_feature_metadata, sidecar_path, write_feature_file)
import numpy as np
import pytest


def make_spec(**overrides):
    """Return a valid spec with some fields replaced."""
    values = {'model_name': 'models/llava-tiny', 'model_hash': 'ab' * 32,
              'mode': 'image_grid', 'layer': 2, 'grid': 2, 'prompt': 'Drive.',
              'preprocessing': 'pad', 'image_size': 112, 'dtype': 'float32', 'feature_dim': 8}
    values.update(overrides)
    return FeatureSpec(**values)


def make_arrays(count=5, dim=8, seed=0):
    """Return feature-file arrays with distinct values."""
    rng = np.random.default_rng(seed)
    return {'features': rng.standard_normal((count, dim)).astype(np.float32),
            'actions': rng.uniform([-1, 0, 0], 1, (count, 3)).astype(np.float32),
            'stamps': np.arange(count, dtype=np.int64) * 50_000_000 + 10**18,
            'speed': rng.uniform(0, 10, count).astype(np.float32),
            'episode': (np.arange(count) >= 2).astype(np.int64)}


def test_spec_round_trip_and_validation():
    spec = make_spec()
    assert FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert make_spec(mode=FeatureMode.LAST_TOKEN, grid=None).mode == 'last_token'
    with pytest.raises(ValueError, match="'avg'"):
        make_spec(mode='avg')
    with pytest.raises(ValueError, match='layer'):
        make_spec(layer=-1)
    with pytest.raises(ValueError, match='layer must be None'):
        make_spec(mode='vision_cls', grid=None)
    with pytest.raises(ValueError, match='grid'):
        make_spec(grid=0)
    with pytest.raises(ValueError, match="'crop'"):
        make_spec(preprocessing='crop')
    with pytest.raises(ValueError, match="'int8'"):
        make_spec(dtype='int8')
    with pytest.raises(ValueError, match='unknown feature spec fields: colour'):
        FeatureSpec.from_dict(dict(make_spec().to_dict(), colour='red'))
    with pytest.raises(ValueError, match='missing fields: layer'):
        FeatureSpec.from_dict({k: v for k, v in make_spec().to_dict().items() if k != 'layer'})


def test_spec_differences_name_what_changes_features():
    spec = make_spec(layer=16)
    assert spec.differences(make_spec(layer=16, package_version='9.9.9')) == []
    assert spec.differences(make_spec(layer=16, model_name='/elsewhere/llava-tiny')) == []
    assert spec.differences(make_spec(layer=8)) == ['layer: checkpoint 16, extractor 8']
    other = make_spec(layer=16, model_hash='cd' * 32, model_name='other', prompt='Go.')
    found = spec.differences(other, labels=('a', 'b'))
    assert found[0] == 'model_name: a "models/llava-tiny", b "other"'
    assert any(line.startswith('model_hash: a ') for line in found)
    assert 'prompt: a "Drive.", b "Go."' in found


def test_model_content_hash_small_and_sampled_files(tmp_path, monkeypatch):
    (tmp_path / 'config.json').write_text('{"a": 1}')
    weights = tmp_path / 'model.safetensors'
    header = b'{"w":{"dtype":"F32","shape":[4096],"data_offsets":[0,16384]}}'
    payload = np.arange(4096, dtype=np.float32).tobytes()
    weights.write_bytes(len(header).to_bytes(8, 'little') + header + payload)
    (tmp_path / 'README.md').write_text('not hashed')
    first = model_content_hash(tmp_path)
    assert len(first) == 64 and model_content_hash(tmp_path) == first
    (tmp_path / 'README.md').write_text('changed, still not hashed')
    assert model_content_hash(tmp_path) == first
    # Sampled path: files above the limit are hashed by header and samples.
    monkeypatch.setattr(spec_module, 'FULL_HASH_LIMIT', 1024)
    monkeypatch.setattr(spec_module, 'SAMPLE_BYTES', 256)
    sampled = model_content_hash(tmp_path)
    assert sampled != first
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the last sample always covers the end of the file
    weights.write_bytes(bytes(data))
    assert model_content_hash(tmp_path) != sampled
    (tmp_path / 'config.json').write_text('{"a": 2}')
    with pytest.raises(FileNotFoundError, match='model directory not found'):
        model_content_hash(tmp_path / 'missing')


def test_write_load_round_trip(tmp_path):
    arrays = make_arrays()
    path = feature_file_for_bag(tmp_path / 'features', tmp_path / 'bags' / 'run_3')
    assert path.name == 'run_3.safetensors'
    meta = {'source_bag': '/bags/run_3', 'frames_skipped': 1}
    write_feature_file(path, spec=make_spec(), meta=meta, **arrays)
    loaded = load_feature_file(path)
    for name, array in arrays.items():
        np.testing.assert_array_equal(getattr(loaded, name), array)
        assert getattr(loaded, name).dtype == array.dtype
    assert loaded.spec == make_spec() and loaded.meta == meta and loaded.num_frames == 5
    assert read_feature_metadata(path)['num_frames'] == 5
    assert list_feature_files(tmp_path / 'features') == [path]
    assert not [p for p in (tmp_path / 'features').iterdir() if p.name.startswith('.')]


def test_float16_features_are_kept(tmp_path):
    arrays = make_arrays()
    arrays['features'] = arrays['features'].astype(np.float16)
    path = write_feature_file(tmp_path / 'a.safetensors', spec=make_spec(), **arrays)
    assert load_feature_file(path).features.dtype == np.float16


def test_write_rejects_bad_input(tmp_path):
    arrays = make_arrays()
    with pytest.raises(FeatureStoreError, match='lengths differ'):
        write_feature_file(tmp_path / 'a.safetensors', spec=make_spec(),
                           **dict(arrays, speed=arrays['speed'][:3]))
    with pytest.raises(FeatureStoreError, match='empty'):
        write_feature_file(tmp_path / 'a.safetensors', spec=make_spec(),
                           **make_arrays(count=0))
    with pytest.raises(FeatureStoreError, match='feature_dim=4'):
        write_feature_file(tmp_path / 'a.safetensors', spec=make_spec(feature_dim=4), **arrays)
    assert not list(tmp_path.iterdir())


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FeatureStoreError, match='not found'):
        load_feature_file(tmp_path / 'missing.safetensors')
    path = write_feature_file(tmp_path / 'a.safetensors', spec=make_spec(), **make_arrays())
    good = path.read_bytes()
    # Tensors without sidecar: an unfinished write.
    sidecar_text = sidecar_path(path).read_text()
    os.remove(sidecar_path(path))
    with pytest.raises(FeatureStoreError, match='no metadata'):
        load_feature_file(path)
    assert list_feature_files(tmp_path) == []
    sidecar_path(path).write_text(sidecar_text)
    path.write_bytes(b'')
    with pytest.raises(FeatureStoreError, match='empty'):
        load_feature_file(path)
    path.write_bytes(good[:len(good) // 2])
    with pytest.raises(FeatureStoreError, match='corrupt'):
        load_feature_file(path)
    # A sidecar from another write does not pair with these tensors.
    path.write_bytes(good)
    document = json.loads(sidecar_text)
    document['meta'] = {'source_bag': 'other'}
    sidecar_path(path).write_text(json.dumps(document))
    with pytest.raises(FeatureStoreError, match='does not belong'):
        load_feature_file(path)
    sidecar_path(path).write_text('{not json')
    with pytest.raises(FeatureStoreError, match='corrupt feature metadata'):
        load_feature_file(path)


@pytest.mark.parametrize('tensor, frame, value, message', [
    ('features', 3, np.nan, 'non-finite features'),
    ('actions', 1, np.inf, 'non-finite actions'),
    ('actions', 2, 1.5, 'actions out of range'),
    ('speed', 4, np.nan, 'non-finite speed')])
def test_write_refuses_bad_numbers_naming_the_frame(tmp_path, tensor, frame, value, message):
    arrays = make_arrays()
    arrays[tensor][frame] = value
    with pytest.raises(FeatureStoreError, match=f'frame {frame} .*{message}'):
        write_feature_file(tmp_path / 'a.safetensors', spec=make_spec(), **arrays)
    assert not list(tmp_path.iterdir())


def rewrite(path, **changes):
    """Rewrite a feature file's tensors (and its embedded metadata), as damage would."""
    from safetensors import safe_open
    from safetensors.numpy import save_file
    with safe_open(str(path), framework='numpy') as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    metadata = changes.pop('metadata', metadata)
    tensors.update(changes)
    save_file(tensors, str(path), metadata=metadata)


def test_load_refuses_bad_numbers_dtypes_shapes_and_headers(tmp_path):
    path = write_feature_file(tmp_path / 'a.safetensors', spec=make_spec(), **make_arrays())
    good = path.read_bytes()
    arrays = make_arrays()
    cases = [({'features': np.where(np.arange(5)[:, None] == 2, np.nan, arrays['features'])
               .astype(np.float32)}, 'frame 2 .*non-finite features'),
             ({'actions': arrays['actions'] * np.float32([1, -1, 1])}, 'actions out of range'),
             ({'speed': np.full(5, np.inf, np.float32)}, 'frame 0 .*non-finite speed'),
             ({'pose': np.full((5, 3), -np.inf, np.float32)}, 'infinite pose'),
             ({'actions': arrays['actions'].astype(np.float64)}, 'actions is float64'),
             ({'stamps': arrays['stamps'].astype(np.float32)}, 'stamps is float32'),
             ({'speed': arrays['speed'][:, None]}, r'speed is float32 of shape \(5, 1\)'),
             ({'metadata': {'llava_drive': '{not json'}}, 'embedded metadata is not JSON'),
             ({'metadata': None}, 'does not belong')]
    for changes, message in cases:
        path.write_bytes(good)
        rewrite(path, **dict(changes))
        with pytest.raises(FeatureStoreError, match=message) as error:
            load_feature_file(path)
        assert str(path) in str(error.value) and '\n' not in str(error.value)
    for damage in (b'not a safetensors file', b'\xff' * 8 + good[8:], good[:8] + b'[1, 2]'):
        path.write_bytes(damage)
        with pytest.raises(FeatureStoreError, match='corrupt feature file') as error:
            load_feature_file(path)
        assert '\n' not in str(error.value)
    path.write_bytes(good)
    assert load_feature_file(path).num_frames == 5
