"""
Checkpoint directories: ``model.safetensors`` + ``config.json`` + ``train_config.json``.

``config.json`` holds everything needed to run the head: its architecture (``head``), the
exact feature specification it was trained on (``feature_spec``), the normalization
statistics (``normalization``, also stored as buffers in ``model.safetensors``), the action
order and ranges, and the metrics (``val_steer_mae``, ``val_steer_r2``, ...).
``train_config.json`` records how it was trained. Nothing is pickled: weights go through
``safetensors.torch`` only, so loading a checkpoint never runs code.

A checkpoint is written whole or not at all: its files go into a hidden staging directory
beside the target (``.NAME.partial-PID``), which is renamed onto the target at the end, so an
interrupted or failed save leaves the previous checkpoint (or nothing) in place. Only an
absent or empty directory, or a checkpoint, is replaced. Loading refuses, in one line, a
directory missing any of the three files, corrupt or non-finite weights and damaged JSON
(the checks that need no torch are in :mod:`.checkpoint_files`).
"""
from contextlib import contextmanager
import json
import os
from pathlib import Path
import shutil

from llava_drive import __version__
from llava_drive.features.spec import FeatureSpec
from llava_drive.learning import ACTION_NAMES
from llava_drive.learning.checkpoint_files import (check_checkpoint_files, CHECKPOINT_FILES,
                                                   CheckpointError, CONFIG_FILE,
                                                   FORMAT_VERSION, TRAIN_CONFIG_FILE,
                                                   WEIGHTS_FILE)
from llava_drive.learning.heads import ActionHead, build_head, HeadConfig
from llava_drive.learning.metrics import json_safe
import numpy as np
from safetensors.torch import load_file, save_file

OUTPUT_RANGES = {'steer': [-1.0, 1.0], 'throttle': [0.0, 1.0], 'brake': [0.0, 1.0]}


class FeatureSpecMismatch(ValueError):
    """Features were produced differently from those a checkpoint was trained on."""


def _write_json(path: Path, document: dict):
    """Write strict JSON (NaN is an error: metrics go through ``json_safe`` first)."""
    path.write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + '\n')


@contextmanager
def staged_directory(out_dir):
    """
    Yield an empty staging directory that replaces ``out_dir`` when the block succeeds.

    The staging directory lies beside ``out_dir`` (same filesystem, so the final rename is
    atomic) and is removed when the block raises.

    :param out_dir: the directory to create or replace: absent, empty or a checkpoint.
    :raises CheckpointError: ``out_dir`` is a file, or a non-empty directory holding no
        checkpoint (never replaced: it may be a parent directory of checkpoints).
    """
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(f'{out_dir} exists and is not a directory')
    if out_dir.is_dir() and any(out_dir.iterdir()) \
            and not any((out_dir / name).exists() for name in CHECKPOINT_FILES):
        raise CheckpointError(f'{out_dir} is a non-empty directory without a checkpoint; '
                              'refusing to replace it (give a new or empty directory)')
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = out_dir.with_name(f'.{out_dir.name}.partial-{os.getpid()}')
    shutil.rmtree(stage, ignore_errors=True)  # a leftover of an earlier run of this pid
    stage.mkdir()
    try:
        yield stage
        _replace_directory(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _replace_directory(stage: Path, out_dir: Path):
    """Rename ``stage`` onto ``out_dir``; an existing non-empty ``out_dir`` is moved aside."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        os.replace(stage, out_dir)  # rename(2) replaces an empty directory
        return
    old = out_dir.with_name(f'.{out_dir.name}.old-{os.getpid()}')
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out_dir, old)
    try:
        os.replace(stage, out_dir)
    except OSError:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(out_dir, head: ActionHead, feature_spec, metrics=None,
                    train_config=None) -> Path:
    """
    Write a checkpoint directory atomically (see :func:`staged_directory`); return its path.

    :param out_dir: destination directory: absent, empty or a checkpoint to replace.
    :param head: the trained head, normalization statistics set.
    :param feature_spec: the ``FeatureSpec`` (or its dict) of the training features.
    :param metrics: flat dict of metrics (NaN is stored as null).
    :param train_config: the training configuration as a JSON-ready dict.
    """
    with staged_directory(out_dir) as stage:
        write_checkpoint_files(stage, head, feature_spec, metrics, train_config)
    return Path(out_dir)


def write_checkpoint_files(directory, head: ActionHead, feature_spec, metrics=None,
                           train_config=None) -> None:
    """
    Write the checkpoint files into an existing (staging) directory; see :func:`save_checkpoint`.

    :param directory: where the files go.
    :param head: the trained head, normalization statistics set.
    :param feature_spec: the ``FeatureSpec`` (or its dict) of the training features.
    :param metrics: flat dict of metrics (NaN is stored as null).
    :param train_config: the training configuration as a JSON-ready dict.
    """
    directory = Path(directory)
    if isinstance(feature_spec, dict):
        feature_spec = FeatureSpec.from_dict(feature_spec)
    if feature_spec.feature_dim != head.config.feature_dim:
        raise CheckpointError(f'head feature_dim {head.config.feature_dim} does not match the '
                              f'feature spec feature_dim {feature_spec.feature_dim}')
    state = {name: tensor.detach().cpu().contiguous()
             for name, tensor in head.state_dict().items()}
    bad = [name for name, tensor in state.items()
           if tensor.is_floating_point() and not tensor.isfinite().all()]
    if bad:
        raise CheckpointError(f'refusing to save non-finite weights: {", ".join(bad)}')
    save_file(state, str(directory / WEIGHTS_FILE),
              metadata={'format': 'pt', 'llava_drive': __version__})
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
    try:
        _write_json(directory / CONFIG_FILE, config)
    except ValueError as error:  # a non-finite normalization statistic
        raise CheckpointError(f'refusing to save a non-finite normalization: {error}') from None
    _write_json(directory / TRAIN_CONFIG_FILE, dict(train_config or {}))


def load_checkpoint(directory, device='cpu'):
    """
    Load a checkpoint directory; return ``(head, config)`` with the head in eval mode.

    :param directory: the checkpoint directory.
    :param device: torch device for the head.
    :raises CheckpointError: missing, corrupt or non-finite files, or weights that do not
        match config.json.
    """
    directory = Path(directory)
    config = check_checkpoint_files(directory)
    weights = directory / WEIGHTS_FILE
    try:
        head = build_head(HeadConfig.from_dict(config['head']))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f'{directory}: bad head configuration: {error}') from None
    try:
        state = load_file(str(weights))
    except Exception as error:  # safetensors raises several unrelated types
        raise CheckpointError(f'corrupt {weights}: {error}') from None
    bad = [name for name, tensor in state.items()
           if tensor.is_floating_point() and not tensor.isfinite().all()]
    if bad:
        raise CheckpointError(f'{weights} holds non-finite weights: {", ".join(sorted(bad))}')
    try:
        head.load_state_dict(state, strict=True)
    except (RuntimeError, OSError) as error:
        raise CheckpointError(f'{weights} does not fit the head in {CONFIG_FILE}: {error}') \
            from None
    stored = config.get('normalization')
    try:
        same = isinstance(stored, dict) and np.allclose(
            stored.get('feature_mean', []), head.feature_mean.numpy(), atol=1e-6) \
            and np.allclose(stored.get('feature_std', []), head.feature_std.numpy())
    except (TypeError, ValueError):
        same = False
    if not same:
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
