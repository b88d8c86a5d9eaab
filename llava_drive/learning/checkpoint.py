"""
Checkpoint directories: ``model.safetensors`` + ``config.json`` + ``train_config.json``.

``config.json`` holds everything needed to run the head: its architecture (``head``), the
exact feature specification it was trained on (``feature_spec``), the normalization
statistics (``normalization``, also stored as buffers in ``model.safetensors``), the action
order and ranges, and the metrics (``val_steer_mae``, ``val_steer_r2``, ...).
``train_config.json`` records how it was trained. Nothing is pickled: weights go through
``safetensors.torch`` only, so loading a checkpoint never runs code.
"""
import json
import os
from pathlib import Path

from llava_drive import __version__
from llava_drive.features.spec import FeatureSpec
from llava_drive.learning import ACTION_NAMES
from llava_drive.learning.heads import ActionHead, build_head, HeadConfig
from llava_drive.learning.metrics import json_safe
import numpy as np
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
WEIGHTS_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'
TRAIN_CONFIG_FILE = 'train_config.json'
OUTPUT_RANGES = {'steer': [-1.0, 1.0], 'throttle': [0.0, 1.0], 'brake': [0.0, 1.0]}


class CheckpointError(Exception):
    """A checkpoint directory is missing files or its files do not agree."""


class FeatureSpecMismatch(ValueError):
    """Features were produced differently from those a checkpoint was trained on."""


def _write_json(path: Path, document: dict):
    """Write JSON through a temporary file so a crash never leaves half a file."""
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + '\n')
    os.replace(tmp, path)


def save_checkpoint(out_dir, head: ActionHead, feature_spec, metrics=None,
                    train_config=None) -> Path:
    """
    Write a checkpoint directory; return its path.

    :param out_dir: destination directory (created; files in it are replaced).
    :param head: the trained head, normalization statistics set.
    :param feature_spec: the ``FeatureSpec`` (or its dict) of the training features.
    :param metrics: flat dict of metrics (NaN is stored as null).
    :param train_config: the training configuration as a JSON-ready dict.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(feature_spec, dict):
        feature_spec = FeatureSpec.from_dict(feature_spec)
    if feature_spec.feature_dim != head.config.feature_dim:
        raise CheckpointError(f'head feature_dim {head.config.feature_dim} does not match the '
                              f'feature spec feature_dim {feature_spec.feature_dim}')
    state = {name: tensor.detach().cpu().contiguous()
             for name, tensor in head.state_dict().items()}
    tmp = out_dir / f'.{WEIGHTS_FILE}.tmp-{os.getpid()}'
    save_file(state, str(tmp), metadata={'format': 'pt', 'llava_drive': __version__})
    os.replace(tmp, out_dir / WEIGHTS_FILE)
    config = {
        'format_version': FORMAT_VERSION,
        'package_version': __version__,
        'head': head.config.to_dict(),
        'feature_spec': feature_spec.to_dict(),
        'normalization': head.normalization(),
        'output': head.config.output,
        'output_names': head.config.output_names(),
        'action_names': list(ACTION_NAMES),
        'output_ranges': OUTPUT_RANGES,
        'metrics': json_safe(dict(metrics or {})),
    }
    _write_json(out_dir / CONFIG_FILE, config)
    _write_json(out_dir / TRAIN_CONFIG_FILE, dict(train_config or {}))
    return out_dir


def read_checkpoint_config(directory) -> dict:
    """
    Return a checkpoint's ``config.json`` without loading any weights.

    :param directory: the checkpoint directory.
    """
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f'not a checkpoint directory (no {CONFIG_FILE}): {directory}')
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        raise CheckpointError(f'corrupt {path}: {error}') from None
    if config.get('format_version') != FORMAT_VERSION:
        raise CheckpointError(
            f'{path}: unsupported checkpoint format_version {config.get("format_version")!r}')
    return config


def load_checkpoint(directory, device='cpu'):
    """
    Load a checkpoint directory; return ``(head, config)`` with the head in eval mode.

    :param directory: the checkpoint directory.
    :param device: torch device for the head.
    :raises CheckpointError: missing files, or weights that do not match config.json.
    """
    directory = Path(directory)
    config = read_checkpoint_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f'checkpoint {directory} has no {WEIGHTS_FILE}')
    try:
        head = build_head(HeadConfig.from_dict(config['head']))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f'{directory}: bad head configuration: {error}') from None
    try:
        head.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, OSError) as error:
        raise CheckpointError(f'{weights} does not fit the head in {CONFIG_FILE}: {error}') \
            from None
    stored = config.get('normalization', {})
    if not np.allclose(stored.get('feature_mean', []), head.feature_mean.numpy(), atol=1e-6) \
            or not np.allclose(stored.get('feature_std', []), head.feature_std.numpy()):
        raise CheckpointError(
            f'{directory}: normalization in {CONFIG_FILE} differs from {WEIGHTS_FILE}')
    return head.to(device).eval(), config


def check_feature_spec(checkpoint_config: dict, extractor_spec, other='extractor'):
    """
    Refuse to pair a checkpoint with an extractor that makes different features.

    :param checkpoint_config: the checkpoint's config dict (``load_checkpoint`` result).
    :param extractor_spec: the extractor's ``FeatureSpec`` (or its dict).
    :param other: what ``extractor_spec`` belongs to, used in the message.
    :raises FeatureSpecMismatch: naming every difference, e.g.
        ``layer: checkpoint 16, extractor 8``.
    """
    try:
        trained = FeatureSpec.from_dict(checkpoint_config['feature_spec'])
    except (KeyError, TypeError, ValueError) as error:
        raise FeatureSpecMismatch(
            f'the checkpoint has no usable feature specification: {error}') from None
    if isinstance(extractor_spec, dict):
        extractor_spec = FeatureSpec.from_dict(extractor_spec)
    differences = trained.differences(extractor_spec, labels=('checkpoint', other))
    if differences:
        raise FeatureSpecMismatch(
            f'the checkpoint was trained on different features than the {other} gives: '
            + '; '.join(differences))
